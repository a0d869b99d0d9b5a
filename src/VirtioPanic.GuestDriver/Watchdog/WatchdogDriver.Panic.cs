using System.Buffers.Binary;
using System.Text;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.GuestDriver.Watchdog;

// The panic notifier, the reboot notifier and eventq. Record buffers are posted at probe time
// and kept in ring order (WDT-DRV-10: filled oldest first); a used buffer is posted again with
// state and status reset (WDT-DRV-8). A report fills memory and notifies: no allocation, no lock,
// no wait beyond a bounded status poll (WDT-DRV-9, WDT-DRV-13).
public sealed partial class WatchdogDriver
{
    private readonly Queue<RecordBuffer> _posted = new();
    private readonly List<byte> _recordStatuses = [];
    private uint _recordSequence;

    /// <summary>Status bytes of the record buffers the device returned, in order (1 ACCEPTED, 2 MALFORMED, 3 UNSUPPORTED).</summary>
    public IReadOnlyList<byte> RecordStatuses => _recordStatuses;

    /// <summary>
    /// The panic notifier. With interrupts off: a PANIC record (CRASH_LOADED when
    /// <see cref="CrashKernelLoaded"/>) in the oldest free posted buffer, committed and notified,
    /// its status polled a bounded number of times; then, unless the device ACCEPTED it, the
    /// matching bit written to <c>panic_events</c> when the device offers it.
    /// </summary>
    /// <param name="report">What is known about the panic.</param>
    /// <returns>The path that carried the report.</returns>
    public PanicReportPath Panic(PanicReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        ushort type = CrashKernelLoaded ? WatchdogWire.RecordTypeCrashLoaded : WatchdogWire.RecordTypePanic;
        WatchdogPanicEvent fallback = CrashKernelLoaded ? WatchdogPanicEvent.CrashLoaded : WatchdogPanicEvent.Panicked;
        return Report(type, report, fallback);
    }

    /// <summary>The reboot/poweroff notifier: a SHUTDOWN record, or <c>panic_events</c> = SHUTDOWN.</summary>
    public PanicReportPath Shutdown() => Report(WatchdogWire.RecordTypeShutdown, new PanicReport { Message = "shutdown" }, WatchdogPanicEvent.Shutdown);

    /// <summary>
    /// The minimal path alone (spec §6.6), usable with no driver bound, before feature negotiation
    /// and without any queue (firmware, an early kernel, a crash kernel): reads the offered features
    /// and <c>panic_events</c>, and writes the one bit when the device supports it.
    /// </summary>
    /// <param name="device">A watchdog device found by the guest kernel.</param>
    /// <param name="panicEvent">The event to report.</param>
    /// <returns>Whether the bit was written.</returns>
    public static bool ReportMinimal(GuestVirtioDevice device, WatchdogPanicEvent panicEvent)
    {
        ArgumentNullException.ThrowIfNull(device);
        var offered = (WatchdogFeatures)(device.ReadDeviceFeatures() & (ulong)WatchdogFeatures.All);
        return WritePanicEvents(device, offered, panicEvent);
    }

    // WDT-DRV-12: only when offered; read the supported mask first; exactly one supported bit.
    private static bool WritePanicEvents(GuestVirtioDevice device, WatchdogFeatures offered, WatchdogPanicEvent panicEvent)
    {
        if ((offered & WatchdogFeatures.PanicConfig) == 0)
        {
            return false;
        }

        // One aligned 32-bit read: atomic on its own, no generation loop needed from panic context.
        Span<byte> field = stackalloc byte[4];
        device.Transport.ReadConfigRaw(WatchdogWire.ConfigPanicEvents, field);
        uint supported = BinaryPrimitives.ReadUInt32LittleEndian(field);
        if ((supported & (uint)panicEvent) == 0)
        {
            return false;
        }

        device.WriteConfigUInt32(WatchdogWire.ConfigPanicEvents, (uint)panicEvent);
        return true;
    }

    private PanicReportPath Report(ushort type, PanicReport report, WatchdogPanicEvent fallback)
    {
        bool interrupts = _kernel.Cpu.InterruptsEnabled;
        _kernel.Cpu.InterruptsEnabled = false;   // local_irq_disable(): a panic notifier runs with interrupts off
        try
        {
            // WDT-DRV-13: the record path when eventq is live and a posted buffer is free.
            if ((Features & WatchdogFeatures.Events) != 0 && !_device.Queue(WatchdogWire.EventQueue).IsBroken && _posted.Count > 0)
            {
                RecordBuffer record = _posted.Dequeue();
                Commit(record, type, report);
                if (PollStatus(record) == WatchdogWire.RecordStatusAccepted)
                {
                    return PanicReportPath.EventRecord;
                }
            }

            return WritePanicEvents(_device, OfferedFeatures, fallback) ? PanicReportPath.ConfigField : PanicReportPath.None;
        }
        finally
        {
            _kernel.Cpu.InterruptsEnabled = interrupts;
        }
    }

    // WDT-DRV-9 and WDT-DRV-11: the whole record first, within the limits; then state =
    // COMMITTED with a release store; then one unconditional notification.
    private void Commit(RecordBuffer record, ushort type, PanicReport report)
    {
        bool logTail = (Features & WatchdogFeatures.LogTail) != 0;
        byte[] message = Utf8Prefix(report.Message, WatchdogWire.MessageMax);
        byte[] tail = logTail && report.LogTail is not null ? Utf8Suffix(report.LogTail, WatchdogWire.LogTailMax) : [];
        int codes = Math.Min(report.Codes.Count, WatchdogWire.CodesMax);
        var format = (PanicCodeFormat)Math.Clamp((int)report.CodeFormat, 0, (int)PanicCodeFormat.HyperVCrash);

        Span<byte> header = stackalloc byte[WatchdogWire.RecordHeaderSize];
        header.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(header[WatchdogWire.RecordType..], type);
        header[WatchdogWire.RecordCodeCount] = (byte)codes;
        header[WatchdogWire.RecordCodeFormat] = (byte)format;
        BinaryPrimitives.WriteUInt32LittleEndian(header[WatchdogWire.RecordSequence..], ++_recordSequence);
        BinaryPrimitives.WriteUInt32LittleEndian(header[WatchdogWire.RecordVcpu..], report.VcpuId ?? WatchdogWire.UnknownVcpu);
        BinaryPrimitives.WriteUInt64LittleEndian(header[WatchdogWire.RecordGuestTime..], report.GuestTime is TimeSpan time ? (ulong)time.Ticks * 100 : 0);
        for (int i = 0; i < codes; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(header[(WatchdogWire.RecordCodes + (8 * i))..], report.Codes[i]);
        }

        BinaryPrimitives.WriteUInt16LittleEndian(header[WatchdogWire.RecordMessageLength..], (ushort)message.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[WatchdogWire.RecordLogTailLength..], (uint)tail.Length);
        Memory.TryWrite(record.Record + 4, header[4..]);
        Memory.TryWrite(record.Record + WatchdogWire.RecordHeaderSize, message);
        Memory.TryWrite(record.Record + WatchdogWire.RecordHeaderSize + (ulong)message.Length, tail);

        // Release store, after the body: every byte of the record is visible before the device can
        // see COMMITTED. Pairs with the device's acquire load of state before it copies the body
        // (WDT-DRV-9 / WDT-DEV-36; the device side is EventQueueWorker.IsCommitted).
        StoreCommitted(record.Record + WatchdogWire.RecordState);
        record.Committed = true;

        // virtqueue_notify, not virtqueue_kick: committing adds no buffer, suppression does not apply.
        _device.Queue(WatchdogWire.EventQueue).Notify();
    }

    private void StoreCommitted(ulong stateAddress)
    {
        if (Memory.TryStoreUInt32Release(stateAddress, WatchdogWire.RecordCommitted) == GuestMemoryStatus.Misaligned)
        {
            // Record buffers are allocated 16-byte aligned; should one not be, a full fence and then
            // a plain store is a release too.
            Interlocked.MemoryBarrier();
            Memory.TryWriteUInt32(stateAddress, WatchdogWire.RecordCommitted);
        }
    }

    private byte PollStatus(RecordBuffer record)
    {
        Span<byte> status = stackalloc byte[1];
        for (int i = 0; i < _options.PanicStatusPolls; i++)
        {
            Memory.TryRead(record.Status, status);
            if (status[0] != WatchdogWire.RecordStatusPending)
            {
                return status[0];
            }

            Thread.SpinWait(16);
        }

        return WatchdogWire.RecordStatusPending;
    }

    private void PostRecordBuffers()
    {
        bool logTail = (Features & WatchdogFeatures.LogTail) != 0;
        uint length = (uint)(WatchdogWire.RecordHeaderSize + WatchdogWire.MessageMax + (logTail ? WatchdogWire.LogTailMax : 0));
        GuestVirtqueue queue = _device.Queue(WatchdogWire.EventQueue);
        for (int i = 0; i < _options.RecordBuffers; i++)
        {
            var record = new RecordBuffer(_kernel.AllocateBuffer(length), length, _kernel.AllocateBuffer(WatchdogWire.RecordStatusSize));
            Post(queue, record);
        }

        queue.Ring.Publish();
        queue.Callback = OnRecordUsed;
    }

    // WDT-DRV-8: state not COMMITTED and status PENDING before the buffer is made available.
    private void Post(GuestVirtqueue queue, RecordBuffer record)
    {
        Memory.TryWriteUInt32(record.Record + WatchdogWire.RecordState, 0);
        Memory.TryWrite(record.Status, stackalloc byte[WatchdogWire.RecordStatusSize]);
        record.Committed = false;
        if (queue.TryAdd([new DriverBuffer(record.Record, record.RecordLength, false), new DriverBuffer(record.Status, WatchdogWire.RecordStatusSize, true)], record))
        {
            _posted.Enqueue(record);
        }
    }

    // eventq interrupt: the device consumed committed records; note their status, post them again.
    private void OnRecordUsed(GuestVirtqueue queue)
    {
        bool reposted = false;
        Span<byte> status = stackalloc byte[1];
        while (queue.TryGetUsed(out UsedBuffer _, out object? token))
        {
            var record = (RecordBuffer)token!;
            Memory.TryRead(record.Status, status);
            _recordStatuses.Add(status[0]);
            Post(queue, record);
            reposted = true;
        }

        if (reposted)
        {
            queue.Kick();
        }
    }

    private static byte[] Utf8Prefix(string text, int max)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        if (bytes.Length <= max)
        {
            return bytes;
        }

        int cut = max;
        while (cut > 0 && (bytes[cut] & 0xC0) == 0x80)
        {
            cut--;   // do not split a character
        }

        return bytes[..cut];
    }

    private static byte[] Utf8Suffix(string text, int max)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        if (bytes.Length <= max)
        {
            return bytes;
        }

        int start = bytes.Length - max;
        while (start < bytes.Length && (bytes[start] & 0xC0) == 0x80)
        {
            start++;
        }

        return bytes[start..];
    }
}
