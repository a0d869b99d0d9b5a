using VirtioPanic.Device.Protocol;
using VirtioPanic.Device.Queues;
using VirtioPanic.Device.Timer;
using VirtioPanic.Snapshots;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device;

// Snapshot and restore of the device state, versioned. Layout of version 2 (little-endian); version
// 1, which RestoreState still reads, is the same without the vCPU part at the end:
//
//   u32 magic 'VPWD' (0x44575056)   u32 version (1)
//   u32 boot_reason                  i64 event sequence          i64 protocol errors
//   u8  flags: 1 armed, 2 nowayout, 4 expired, 8 pretimeout fired, 16 notice pending, 32 needs reset
//   i64 run time, timeout, pretimeout, last keepalive, grace floor, notice time left (100 ns ticks of VM run time)
//   i64 countdown
//   u32 held record count, then per record: u16 token id, u16 slot count, u8 readable buffers,
//       u8 buffers, then per buffer u64 guest address, u32 length
//   vCPU part (version 2): u32 vcpu count (0 without VIRTIO_WDT_F_VCPU_STALL offered),
//       i64 vCPU grace floor (VM run time), i64 the pending pretimeout notice's order (0: none),
//       then per vCPU: u8 state (0 untracked, 1 tracked, 2 stalled, 3 untracked after its stage
//       two, not petted since), i64 its run time since its last pet, i64 VM run time at stage
//       one, i64 its run time since the pet at stage one, i64 its pending notice's order (0:
//       none); an untracked slot is all zero, an untracked-after-stage-two one all zero but its
//       stage one
//
// The queues' own state (indices, addresses) is the transport's to save (VirtqueueState); the
// held eventq chains are the device's, saved here by guest address and re-validated on restore.
//
// Restore treats the image as hostile (issue 19). It is parsed and validated completely before
// anything is changed, and every value is bounded by what this device itself can produce: the
// timeout within its [min, max] (and the default one without CONTROL), a pretimeout below it
// (none without PRETIMEOUT), NOWAYOUT only with CONTROL, run time at most WatchdogTimer.MaxRunTime,
// the last keepalive not after the run time, the grace floor no further ahead of it than this
// device's own resume grace, counters in [0, 2^62], flag combinations the state machine can reach,
// held records as the eventq worker could hold them (at most 16, distinct ids below the queue size,
// 1 to 8 buffers, a readable part of at least 80 bytes, at most MaxChainBytes in all). A refused
// image changes nothing and comes back as a SnapshotStatus, never as an exception.
public sealed partial class WatchdogDevice
{
    /// <summary>The state format version <see cref="SaveState"/> writes and <see cref="RestoreState"/> reads.</summary>
    public const int StateVersion = 2;

    private const int LegacyStateVersion = 1;

    private const uint StateMagic = 0x44575056;

    // The flags byte of the layout above.
    private const int FlagArmed = 1;
    private const int FlagNowayout = 2;
    private const int FlagExpired = 4;
    private const int FlagPretimeoutFired = 8;
    private const int FlagNoticePending = 16;
    private const int FlagNeedsReset = 32;
    private const int FlagsKnown = FlagArmed | FlagNowayout | FlagExpired | FlagPretimeoutFired | FlagNoticePending | FlagNeedsReset;

    // Counters (event sequence, protocol errors, countdown) count up by one from zero: a device
    // cannot reach 2^62 in any realistic lifetime, and staying below it keeps every increment far
    // from overflow.
    private const long MaxCounter = 1L << 62;

    /// <summary>
    /// Captures the device state for a snapshot or migration: the watchdog (armed, NOWAYOUT,
    /// timeout, pretimeout, time left in VM run time), the boot reason, the sequence counters, the
    /// record buffers the device holds and every vCPU slot of per-vCPU stall detection (its state,
    /// run time since its last pet, a stall's stage-two time and pending notice). Call with the VM's vCPUs stopped.
    /// </summary>
    /// <returns>A versioned, self-describing byte image.</returns>
    public byte[] SaveState()
    {
        WatchdogTimerState timer = _timer.Save();
        HeldRecordState[] held;
        lock (_lock)
        {
            held = _context is not null ? _eventWorker.SaveHeld() : _restoredHeld ?? [];
        }

        var writer = new SnapshotWriter();
        writer.WriteUInt32(StateMagic);
        writer.WriteUInt32(StateVersion);
        writer.WriteUInt32((uint)Volatile.Read(ref _bootReason));
        writer.WriteUInt64((ulong)_sink.CurrentSequence);
        writer.WriteUInt64((ulong)Interlocked.Read(ref _protocolErrors));
        byte flags = (byte)((timer.Armed ? FlagArmed : 0) | (timer.Nowayout ? FlagNowayout : 0) | (timer.Expired ? FlagExpired : 0)
            | (timer.PretimeoutFired ? FlagPretimeoutFired : 0) | (timer.NoticePending ? FlagNoticePending : 0)
            | (Volatile.Read(ref _needsReset) != 0 ? FlagNeedsReset : 0));
        writer.WriteByte(flags);
        writer.WriteUInt64((ulong)timer.RunTime.Ticks);
        writer.WriteUInt64((ulong)timer.Timeout.Ticks);
        writer.WriteUInt64((ulong)timer.Pretimeout.Ticks);
        writer.WriteUInt64((ulong)timer.LastKeepalive.Ticks);
        writer.WriteUInt64((ulong)timer.GraceFloor.Ticks);
        writer.WriteUInt64((ulong)timer.NoticeTimeLeft.Ticks);
        writer.WriteUInt64((ulong)timer.Countdown);
        writer.WriteUInt32((uint)held.Length);
        foreach (HeldRecordState record in held)
        {
            writer.WriteUInt16(record.Token.Id);
            writer.WriteUInt16(record.Token.SlotCount);
            writer.WriteByte((byte)record.Readable);
            writer.WriteByte((byte)record.Buffers.Length);
            foreach (HeldBufferState buffer in record.Buffers)
            {
                writer.WriteUInt64(buffer.Address);
                writer.WriteUInt32(buffer.Length);
            }
        }

        VcpuSlotState[] slots = _vcpus?.Save() ?? [];
        writer.WriteUInt32((uint)slots.Length);
        writer.WriteUInt64((ulong)(_vcpus?.GraceFloor ?? TimeSpan.Zero).Ticks);
        writer.WriteUInt64((ulong)timer.NoticeOrder);
        foreach (VcpuSlotState slot in slots)
        {
            writer.WriteByte((byte)slot.State);
            writer.WriteUInt64((ulong)slot.SincePet.Ticks);
            writer.WriteUInt64((ulong)slot.StalledAt.Ticks);
            writer.WriteUInt64((ulong)slot.StalledFor.Ticks);
            writer.WriteUInt64((ulong)slot.NoticeOrder);
        }

        return writer.ToArray();
    }

    /// <summary>
    /// Restores a state captured by <see cref="SaveState"/>, treating it as untrusted input: the
    /// whole image is validated against what this device could itself have produced (its timeout
    /// bounds, its resume grace, reachable flag combinations, counters, held record buffers) before
    /// anything changes, and a refused image leaves the device exactly as it was. After a
    /// successful restore the device is paused: call <see cref="Resume"/> when the VM runs, and the
    /// guest then gets at least the resume grace before an expiry. Held record buffers are
    /// re-validated against guest memory when the device is (or next becomes) active.
    /// </summary>
    /// <param name="state">The saved image.</param>
    /// <returns>
    /// <see cref="SnapshotStatus.Ok"/>; <see cref="SnapshotStatus.Malformed"/> for an image that is
    /// not a watchdog device state, is truncated or has trailing bytes;
    /// <see cref="SnapshotStatus.UnsupportedVersion"/> for a version other than
    /// <see cref="StateVersion"/> and 1 (the format before per-vCPU stall detection, read with every vCPU untracked); <see cref="SnapshotStatus.InvalidState"/> for a value this device
    /// could never have had. Never throws for any input.
    /// </returns>
    public SnapshotStatus RestoreState(ReadOnlySpan<byte> state)
    {
        SnapshotStatus result = TryParse(state, out ParsedState parsed, out string reason);
        if (result != SnapshotStatus.Ok)
        {
            WatchdogDeviceLog.RestoreRefused(_logger, Id, result, reason);
            return result;
        }

        // Validated: from here on nothing can fail, so nothing is ever half-restored.
        _timer.Restore(parsed.Timer);
        _vcpus?.Restore(parsed.Vcpus, parsed.VcpuGraceFloor);
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

        WatchdogTimerStatus status = _timer.GetStatus();
        WatchdogDeviceLog.Restored(_logger, Id, status.Armed, status.TimeLeft);
        return SnapshotStatus.Ok;
    }

    private SnapshotStatus TryParse(ReadOnlySpan<byte> state, out ParsedState parsed, out string reason)
    {
        parsed = default;
        var reader = new SnapshotReader(state);
        uint magic = reader.ReadUInt32();
        int version = (int)reader.ReadUInt32();
        if (reader.Failed || magic != StateMagic)
        {
            reason = "not a watchdog device state (bad magic or truncated)";
            return SnapshotStatus.Malformed;
        }

        if (version is not StateVersion and not LegacyStateVersion)
        {
            reason = $"version {version}; this build reads versions {LegacyStateVersion} and {StateVersion} only";
            return SnapshotStatus.UnsupportedVersion;
        }

        uint bootReason = reader.ReadUInt32();
        long sequence = (long)reader.ReadUInt64();
        long protocolErrors = (long)reader.ReadUInt64();
        byte flags = reader.ReadByte();
        long runTime = (long)reader.ReadUInt64();
        long timeout = (long)reader.ReadUInt64();
        long pretimeout = (long)reader.ReadUInt64();
        long lastKeepalive = (long)reader.ReadUInt64();
        long graceFloor = (long)reader.ReadUInt64();
        long noticeTimeLeft = (long)reader.ReadUInt64();
        long countdown = (long)reader.ReadUInt64();
        uint heldCount = reader.ReadUInt32();
        if (reader.Failed)
        {
            reason = "truncated";
            return SnapshotStatus.Malformed;
        }

        var timer = new WatchdogTimerState
        {
            RunTime = TimeSpan.FromTicks(runTime),
            Armed = (flags & FlagArmed) != 0,
            Nowayout = (flags & FlagNowayout) != 0,
            Expired = (flags & FlagExpired) != 0,
            PretimeoutFired = (flags & FlagPretimeoutFired) != 0,
            NoticePending = (flags & FlagNoticePending) != 0,
            Timeout = TimeSpan.FromTicks(timeout),
            Pretimeout = TimeSpan.FromTicks(pretimeout),
            LastKeepalive = TimeSpan.FromTicks(lastKeepalive),
            GraceFloor = TimeSpan.FromTicks(graceFloor),
            NoticeTimeLeft = TimeSpan.FromTicks(noticeTimeLeft),
            Countdown = countdown,
        };

        string? invalid = (flags & ~FlagsKnown) != 0 ? "unknown flag bits"
            : bootReason > (uint)WatchdogBootReason.Host ? "unknown boot reason"
            : !IsCounter(sequence) || !IsCounter(protocolErrors) || !IsCounter(countdown) ? "a counter outside [0, 2^62]"
            : heldCount > WatchdogProtocol.MaxPostedRecords ? "more held record buffers than the device holds"
            : heldCount != 0 && (_offered & WatchdogFeatures.Events) == 0 ? "held record buffers without EVENTS offered"
            : CheckTimer(timer);
        if (invalid is not null)
        {
            reason = invalid;
            return SnapshotStatus.InvalidState;
        }

        var held = new HeldRecordState[heldCount];
        Span<bool> ids = stackalloc bool[WatchdogProtocol.EventQueueMaxSize];
        ids.Clear();
        for (int i = 0; i < held.Length; i++)
        {
            var token = new ChainToken(reader.ReadUInt16(), reader.ReadUInt16());
            int readable = reader.ReadByte();
            int count = reader.ReadByte();
            if (reader.Failed)
            {
                reason = "truncated";
                return SnapshotStatus.Malformed;
            }

            if (count is 0 or > WatchdogProtocol.MaxRecordBuffers || readable is 0 || readable > count
                || token.Id >= WatchdogProtocol.EventQueueMaxSize || token.SlotCount is 0 or > WatchdogProtocol.MaxRecordBuffers || ids[token.Id])
            {
                reason = "an impossible held record buffer (buffer counts or chain id)";
                return SnapshotStatus.InvalidState;
            }

            ids[token.Id] = true;
            var buffers = new HeldBufferState[count];
            ulong readableLength = 0;
            ulong total = 0;
            for (int b = 0; b < count; b++)
            {
                buffers[b] = new HeldBufferState(reader.ReadUInt64(), reader.ReadUInt32());
                total += buffers[b].Length;
                readableLength += b < readable ? buffers[b].Length : 0;
                if (buffers[b].Length == 0 || buffers[b].Address > ulong.MaxValue - buffers[b].Length)
                {
                    reason = reader.Failed ? "truncated" : "an impossible held record buffer (length or address)";
                    return reader.Failed ? SnapshotStatus.Malformed : SnapshotStatus.InvalidState;
                }
            }

            if (readableLength < WatchdogProtocol.RecordHeaderSize || total > WatchdogProtocol.MaxChainBytes)
            {
                reason = "an impossible held record buffer (its readable part is shorter than a record header or the chain is longer than the device accepts)";
                return SnapshotStatus.InvalidState;
            }

            held[i] = new HeldRecordState(token, readable, buffers);
        }

        if (reader.Failed)
        {
            reason = "truncated";
            return SnapshotStatus.Malformed;
        }

        VcpuSlotState[] vcpus = new VcpuSlotState[_vcpus?.Count ?? 0];
        TimeSpan vcpuGraceFloor = TimeSpan.Zero;
        if (version == StateVersion)
        {
            SnapshotStatus vcpuStatus = TryParseVcpus(ref reader, timer, vcpus, out vcpuGraceFloor, out long pretimeoutOrder, out reason);
            if (vcpuStatus != SnapshotStatus.Ok)
            {
                return vcpuStatus;
            }

            timer = timer with { NoticeOrder = pretimeoutOrder };
        }

        if (!reader.AtEnd)
        {
            reason = "trailing bytes";
            return SnapshotStatus.Malformed;
        }

        parsed = new ParsedState(timer, (WatchdogBootReason)bootReason, sequence, protocolErrors, (flags & FlagNeedsReset) != 0, held, vcpus, vcpuGraceFloor);
        reason = string.Empty;
        return SnapshotStatus.Ok;
    }

    // The vCPU part of a version-2 image (spec §6.12), bounded by what this device's stall monitor
    // can reach: its vCPU count, states, times within the run time and the stage-one timeout,
    // distinct notice orders (the pretimeout notice's among them), a grace floor no further ahead
    // than its resume grace.
    private SnapshotStatus TryParseVcpus(ref SnapshotReader reader, in WatchdogTimerState timer, VcpuSlotState[] slots,
        out TimeSpan graceFloor, out long pretimeoutOrder, out string reason)
    {
        uint count = reader.ReadUInt32();
        graceFloor = TimeSpan.FromTicks((long)reader.ReadUInt64());
        pretimeoutOrder = (long)reader.ReadUInt64();
        if (reader.Failed)
        {
            reason = "truncated";
            return SnapshotStatus.Malformed;
        }

        if (count != (uint)slots.Length)
        {
            reason = $"{count} vCPU slots; this device has {slots.Length}";
            return SnapshotStatus.InvalidState;
        }

        if (graceFloor < TimeSpan.Zero || graceFloor > timer.RunTime + _timer.Grace)
        {
            reason = "vCPU grace floor further ahead than this device's resume grace";
            return SnapshotStatus.InvalidState;
        }

        if (timer.NoticePending ? !IsCounter(pretimeoutOrder) || pretimeoutOrder == 0 : pretimeoutOrder != 0)
        {
            reason = "a pretimeout notice order without a pending notice, or out of range";
            return SnapshotStatus.InvalidState;
        }

        var orders = new HashSet<long>();
        if (pretimeoutOrder != 0)
        {
            orders.Add(pretimeoutOrder);
        }

        TimeSpan timeout = _vcpus?.Timeout ?? TimeSpan.Zero;
        for (int i = 0; i < slots.Length; i++)
        {
            int state = reader.ReadByte();
            var sincePet = TimeSpan.FromTicks((long)reader.ReadUInt64());
            var stalledAt = TimeSpan.FromTicks((long)reader.ReadUInt64());
            var stalledFor = TimeSpan.FromTicks((long)reader.ReadUInt64());
            long order = (long)reader.ReadUInt64();
            if (reader.Failed)
            {
                reason = "truncated";
                return SnapshotStatus.Malformed;
            }

            bool valid = state switch
            {
                VcpuStallMonitor.Untracked => sincePet == TimeSpan.Zero && stalledAt == TimeSpan.Zero && stalledFor == TimeSpan.Zero && order == 0,
                VcpuStallMonitor.Bitten => sincePet == TimeSpan.Zero && stalledAt >= TimeSpan.Zero && stalledAt <= timer.RunTime && stalledFor == TimeSpan.Zero && order == 0,
                VcpuStallMonitor.Tracked => sincePet >= TimeSpan.Zero && sincePet <= WatchdogTimer.MaxRunTime
                    && stalledAt == TimeSpan.Zero && stalledFor == TimeSpan.Zero && order == 0,
                VcpuStallMonitor.Stalled => stalledFor >= timeout && stalledFor <= WatchdogTimer.MaxRunTime && sincePet >= stalledFor
                    && sincePet <= WatchdogTimer.MaxRunTime && stalledAt >= TimeSpan.Zero && stalledAt <= timer.RunTime
                    && IsCounter(order) && (order == 0 || orders.Add(order)),
                _ => false,
            };
            if (!valid)
            {
                reason = $"vCPU {i}: a slot this device could not have had (state, times or notice order)";
                return SnapshotStatus.InvalidState;
            }

            slots[i] = new VcpuSlotState(state, sincePet, stalledAt, stalledFor, order);
        }

        reason = string.Empty;
        return SnapshotStatus.Ok;
    }

    // The watchdog's part, bounded by what this device's timer can reach. Null when valid.
    private string? CheckTimer(in WatchdogTimerState timer)
    {
        TimeSpan min = TimeSpan.FromMilliseconds(_minTimeoutMs);
        TimeSpan max = TimeSpan.FromMilliseconds(_maxTimeoutMs);
        bool control = (_offered & WatchdogFeatures.Control) != 0;
        bool pretimeoutOffered = (_offered & WatchdogFeatures.Pretimeout) != 0;
        if (timer.RunTime < TimeSpan.Zero || timer.RunTime > WatchdogTimer.MaxRunTime)
        {
            return "run time negative or beyond the most a VM can have run";
        }

        if (timer.Timeout < min || timer.Timeout > max || !IsWholeMilliseconds(timer.Timeout)
            || (!control && timer.Timeout != TimeSpan.FromMilliseconds(_defaultTimeoutMs)))
        {
            return "timeout outside this device's bounds";
        }

        if (timer.Pretimeout < TimeSpan.Zero || timer.Pretimeout >= timer.Timeout || !IsWholeMilliseconds(timer.Pretimeout)
            || (!pretimeoutOffered && timer.Pretimeout != TimeSpan.Zero))
        {
            return "pretimeout not below the timeout, or set without PRETIMEOUT offered";
        }

        if (timer.Nowayout && !control)
        {
            return "NOWAYOUT without CONTROL offered";
        }

        if (timer.LastKeepalive < TimeSpan.Zero || timer.LastKeepalive > timer.RunTime)
        {
            return "last keepalive after the run time";
        }

        // A floor is only ever set to (run time at a resume or restore) + grace.
        if (timer.GraceFloor < TimeSpan.Zero || timer.GraceFloor > timer.RunTime + _timer.Grace)
        {
            return "grace floor further ahead than this device's resume grace";
        }

        if (timer.NoticeTimeLeft < TimeSpan.Zero || timer.NoticeTimeLeft > max)
        {
            return "notice time left beyond the longest timeout";
        }

        if (timer.Armed && timer.Expired)
        {
            return "armed and expired at once";
        }

        if (timer.NoticePending && (!timer.Armed || !timer.PretimeoutFired || timer.Pretimeout == TimeSpan.Zero || timer.NoticeTimeLeft > timer.Pretimeout))
        {
            return "a pending notice without an armed countdown whose pretimeout fired";
        }

        return null;
    }

    private static bool IsCounter(long value) => value is >= 0 and <= MaxCounter;

    private static bool IsWholeMilliseconds(TimeSpan value) => value.Ticks % TimeSpan.TicksPerMillisecond == 0;

    private readonly record struct ParsedState(
        WatchdogTimerState Timer,
        WatchdogBootReason BootReason,
        long Sequence,
        long ProtocolErrors,
        bool NeedsReset,
        HeldRecordState[] Held,
        VcpuSlotState[] Vcpus,
        TimeSpan VcpuGraceFloor);
}
