using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device;

// Snapshot and restore of the device state, versioned. Layout of version 1 (little-endian):
//
//   u32 magic 'VPWD' (0x44575056)   u32 version (1)
//   u32 boot_reason                  i64 event sequence          i64 protocol errors
//   u8  flags: 1 armed, 2 nowayout, 4 expired, 8 pretimeout fired, 16 notice pending, 32 needs reset
//   i64 run time, timeout, pretimeout, last keepalive, grace floor, notice time left (100 ns ticks of VM run time)
//   i64 countdown
//   u32 held record count, then per record: u16 token id, u16 slot count, u8 readable buffers,
//       u8 buffers, then per buffer u64 guest address, u32 length
//
// The queues' own state (indices, addresses) is the transport's to save (VirtqueueState); the
// held eventq chains are the device's, saved here by guest address and re-validated on restore.
public sealed partial class WatchdogDevice
{
    /// <summary>The state format version <see cref="SaveState"/> writes and <see cref="RestoreState"/> reads.</summary>
    public const int StateVersion = 1;

    private const uint StateMagic = 0x44575056;

    /// <summary>
    /// Captures the device state for a snapshot or migration: the watchdog (armed, NOWAYOUT,
    /// timeout, pretimeout, time left in VM run time), the boot reason, the sequence counters and the
    /// record buffers the device holds. Call with the VM's vCPUs stopped.
    /// </summary>
    /// <returns>A versioned, self-describing byte image.</returns>
    public byte[] SaveState()
    {
        WatchdogCoreState core = _core.Save();
        HeldRecordState[] held;
        lock (_lock)
        {
            held = _context is not null ? _eventWorker.SaveHeld() : _restoredHeld ?? [];
        }

        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream))
        {
            writer.Write(StateMagic);
            writer.Write(StateVersion);
            writer.Write((uint)Volatile.Read(ref _bootReason));
            writer.Write(_sink.CurrentSequence);
            writer.Write(Interlocked.Read(ref _protocolErrors));
            byte flags = (byte)((core.Armed ? 1 : 0) | (core.Nowayout ? 2 : 0) | (core.Expired ? 4 : 0) | (core.PretimeoutFired ? 8 : 0)
                | (core.NoticePending ? 16 : 0) | (Volatile.Read(ref _needsReset) != 0 ? 32 : 0));
            writer.Write(flags);
            writer.Write(core.RunTime.Ticks);
            writer.Write(core.Timeout.Ticks);
            writer.Write(core.Pretimeout.Ticks);
            writer.Write(core.LastKeepalive.Ticks);
            writer.Write(core.GraceFloor.Ticks);
            writer.Write(core.NoticeTimeLeft.Ticks);
            writer.Write(core.Countdown);
            writer.Write((uint)held.Length);
            foreach (HeldRecordState record in held)
            {
                writer.Write(record.Token.Id);
                writer.Write(record.Token.SlotCount);
                writer.Write((byte)record.Readable);
                writer.Write((byte)record.Buffers.Length);
                foreach (HeldBufferState buffer in record.Buffers)
                {
                    writer.Write(buffer.Address);
                    writer.Write(buffer.Length);
                }
            }
        }

        return stream.ToArray();
    }

    /// <summary>
    /// Restores a state captured by <see cref="SaveState"/>, treating it as untrusted input. The
    /// device is left paused: call <see cref="Resume"/> when the VM runs, and the guest then gets at
    /// least the resume grace before an expiry. Held record buffers are re-validated against guest
    /// memory when the device is (or next becomes) active.
    /// </summary>
    /// <param name="state">The saved image.</param>
    /// <exception cref="NotSupportedException">The image has a version this build cannot read; the message names both versions.</exception>
    /// <exception cref="InvalidDataException">The image is not a watchdog device state, is truncated, or holds impossible values.</exception>
    public void RestoreState(ReadOnlySpan<byte> state)
    {
        ParsedState parsed = Parse(state);
        _core.Restore(parsed.Core);
        _sink.RestoreSequence(parsed.Sequence);
        Interlocked.Exchange(ref _protocolErrors, parsed.ProtocolErrors);
        Volatile.Write(ref _bootReason, (int)parsed.BootReason);
        Volatile.Write(ref _needsReset, parsed.NeedsReset ? 1 : 0);
        lock (_lock)
        {
            if (_context is not null && _eventWorker.IsStarted)
            {
                _eventWorker.Stop();
                int lost = _eventWorker.RestoreHeld(_context.Memory, parsed.Held);
                _eventWorker.Start(_context, _context.GetQueue(WatchdogProtocol.EventQueue));
                for (int i = 0; i < lost; i++)
                {
                    ReportProtocolError(WatchdogProtocol.EventQueue, WatchdogProtocolError.LostRecordBuffer, "restored record buffer outside guest memory");
                }
            }
            else
            {
                _restoredHeld = parsed.Held;
            }
        }

        CoreStatus status = _core.GetStatus();
        WatchdogDeviceLog.Restored(_logger, Id, status.Armed, status.TimeLeft);
    }

    private ParsedState Parse(ReadOnlySpan<byte> state)
    {
        try
        {
            using var reader = new BinaryReader(new MemoryStream(state.ToArray(), writable: false));
            if (reader.ReadUInt32() != StateMagic)
            {
                throw new InvalidDataException("The data is not a VirtioPanic watchdog device state (bad magic).");
            }

            int version = reader.ReadInt32();
            if (version != StateVersion)
            {
                throw new NotSupportedException($"Watchdog device state version {version} is not supported; this build reads version {StateVersion} only.");
            }

            uint bootReason = reader.ReadUInt32();
            long sequence = reader.ReadInt64();
            long protocolErrors = reader.ReadInt64();
            byte flags = reader.ReadByte();
            TimeSpan runTime = Ticks(reader.ReadInt64());
            TimeSpan timeout = Ticks(reader.ReadInt64());
            TimeSpan pretimeout = Ticks(reader.ReadInt64());
            TimeSpan lastKeepalive = Ticks(reader.ReadInt64());
            TimeSpan graceFloor = Ticks(reader.ReadInt64());
            TimeSpan noticeTimeLeft = Ticks(reader.ReadInt64());
            long countdown = reader.ReadInt64();
            uint heldCount = reader.ReadUInt32();
            if (bootReason > (uint)WatchdogBootReason.Host || sequence < 0 || protocolErrors < 0 || heldCount > WatchdogProtocol.MaxPostedRecords
                || timeout < TimeSpan.FromMilliseconds(_minTimeoutMs) || timeout > TimeSpan.FromMilliseconds(_maxTimeoutMs) || pretimeout >= timeout || lastKeepalive > runTime)
            {
                throw new InvalidDataException("The watchdog device state holds impossible values (boot reason, counters, timeout outside this device's bounds, or times).");
            }

            var held = new HeldRecordState[heldCount];
            for (int i = 0; i < held.Length; i++)
            {
                var token = new ChainToken(reader.ReadUInt16(), reader.ReadUInt16());
                int readable = reader.ReadByte();
                int count = reader.ReadByte();
                if (count is 0 or > WatchdogProtocol.MaxRecordBuffers || readable > count)
                {
                    throw new InvalidDataException("The watchdog device state holds an impossible record buffer.");
                }

                var buffers = new HeldBufferState[count];
                for (int b = 0; b < count; b++)
                {
                    buffers[b] = new HeldBufferState(reader.ReadUInt64(), reader.ReadUInt32());
                }

                held[i] = new HeldRecordState(token, readable, buffers);
            }

            if (reader.BaseStream.Position != reader.BaseStream.Length)
            {
                throw new InvalidDataException("The watchdog device state has trailing bytes.");
            }

            var core = new WatchdogCoreState
            {
                RunTime = runTime,
                Armed = (flags & 1) != 0,
                Nowayout = (flags & 2) != 0,
                Expired = (flags & 4) != 0,
                PretimeoutFired = (flags & 8) != 0,
                NoticePending = (flags & 16) != 0,
                Timeout = timeout,
                Pretimeout = pretimeout,
                LastKeepalive = lastKeepalive,
                GraceFloor = graceFloor,
                NoticeTimeLeft = noticeTimeLeft,
                Countdown = countdown,
            };
            return new ParsedState(core, (WatchdogBootReason)bootReason, sequence, protocolErrors, (flags & 32) != 0, held);
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException("The watchdog device state is truncated.", ex);
        }
    }

    private static TimeSpan Ticks(long ticks) =>
        ticks >= 0 ? TimeSpan.FromTicks(ticks) : throw new InvalidDataException("The watchdog device state holds a negative time.");

    private readonly record struct ParsedState(
        WatchdogCoreState Core,
        WatchdogBootReason BootReason,
        long Sequence,
        long ProtocolErrors,
        bool NeedsReset,
        HeldRecordState[] Held);
}
