using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Host.Demo;

// The demo guest: a few hundred lines standing in for a Linux kernel with the virtio watchdog
// driver of spec/virtio-watchdog.md §6.10 — probe (boot reason, features, queues, posted record
// and notice buffers), the watchdog core's start/ping/set_pretimeout/stop, and the panic notifier
// (a committed record on eventq, with panic_events as the fallback). It runs on its own "vCPU"
// thread, one boot at a time; the VM (DemoVm) stops, pauses and resets it.
//
// It is built on the lowest guest layer that exists today (GuestDriver's ring drivers and
// allocator, register accesses through GuestTransport). When the guest-driver harness (machine
// model, Linux-like virtio core, the watchdog drivers) is on main, this class and GuestTransport
// give way to it: DemoVm's boot scripts call only Probe, StartWatchdog, Pet, StopWatchdog,
// PollNotices, Panic, CrashLoaded, ReportShutdown, PanicEvents and ResetDevice, which map onto the
// harness driver's watchdog-core and panic-notifier operations one to one.
internal sealed class DemoGuest
{
    // Device configuration offsets (spec §4).
    private const uint BootReasonOffset = 0x00;
    private const uint DefaultTimeoutOffset = 0x04;
    private const uint PanicEventsOffset = 0x08;

    // Control commands and record types (spec §6.3, §6.5).
    private const ushort Start = 2;
    private const ushort Stop = 3;
    private const ushort Keepalive = 4;
    private const ushort SetPretimeout = 6;
    private const ushort RecordPanic = 1;
    private const ushort RecordCrashLoaded = 2;
    private const ushort RecordShutdown = 3;
    private const uint Committed = 0x4D4D4F43;
    private const uint RecordBytes = 80 + 1024 + 4096;

    private readonly DemoVm _vm;
    private readonly GuestTransport _transport;
    private readonly GuestMemory _memory;
    private readonly GuestAllocator _allocator;
    private readonly DemoInterrupts _interrupts;
    private readonly ILogger _log;
    private readonly bool _packed;
    private readonly Stopwatch _uptime = Stopwatch.StartNew();
    private readonly Queue<(ulong Record, ulong Status)> _records = new();
    private IVirtqueueDriver? _watchdogq;
    private IVirtqueueDriver? _eventq;
    private IVirtqueueDriver? _noticeq;
    private uint _recordSequence;

    internal DemoGuest(DemoVm vm, GuestTransport transport, GuestMemory memory, GuestAllocator allocator, DemoInterrupts interrupts, ILogger log, bool packed)
    {
        _vm = vm;
        _transport = transport;
        _memory = memory;
        _allocator = allocator;
        _interrupts = interrupts;
        _log = log;
        _packed = packed;
    }

    // Enumeration and driver init. Returns the boot reason the device reported.
    internal WatchdogBootReason Probe()
    {
        _allocator.Reset();
        _records.Clear();
        _transport.Probe();
        _transport.WriteStatus(0);
        _transport.WriteStatus(DeviceStatus.Acknowledge);
        _transport.WriteStatus(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        ulong offered = _transport.ReadDeviceFeatures();
        ulong wanted = (ulong)(WatchdogFeatures.Events | WatchdogFeatures.PanicConfig | WatchdogFeatures.Control | WatchdogFeatures.Pretimeout | WatchdogFeatures.BootReason | WatchdogFeatures.LogTail)
            | VirtioPanic.Virtio.Device.VirtioFeatures.Version1 | (_packed ? VirtioPanic.Virtio.Device.VirtioFeatures.RingPacked : 0);
        ulong accepted = offered & wanted;
        _transport.WriteDriverFeatures(accepted);
        _transport.WriteStatus(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk);
        if ((_transport.ReadStatus() & DeviceStatus.FeaturesOk) == 0)
        {
            throw new InvalidOperationException("the device refused the features");
        }

        var reason = (WatchdogBootReason)_transport.ReadConfig32(BootReasonOffset);
        uint defaultTimeout = _transport.ReadConfig32(DefaultTimeoutOffset);
        _watchdogq = Queue(0, 16);
        _eventq = Queue(1, 8);
        _noticeq = Queue(2, 4);
        _transport.WriteStatus(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk);

        // Post record buffers now, so that a panic only fills memory and notifies (spec §5 step 5).
        for (int i = 0; i < 2; i++)
        {
            ulong record = _allocator.Allocate(RecordBytes, 16);
            ulong status = _allocator.Allocate(8, 8);
            Post(_eventq, new DriverBuffer(record, RecordBytes, DeviceWritable: false), new DriverBuffer(status, 8, DeviceWritable: true));
            _records.Enqueue((record, status));
        }

        _transport.Kick(1);
        for (int i = 0; i < 2; i++)
        {
            Post(_noticeq, new DriverBuffer(_allocator.Allocate(16, 8), 16, DeviceWritable: true));
        }

        _transport.Kick(2);
        Kernel($"virtio_wdt virtio0: {_transport.Name}, {(_packed ? "packed" : "split")} rings, features 0x{accepted & 0x3F:x2}, default timeout {defaultTimeout} ms, boot reason {Name(reason)}");
        if (reason != WatchdogBootReason.None)
        {
            Kernel($"virtio_wdt virtio0: previous boot was ended by the host: {Name(reason)} (WDIOF_CARDRESET)");
            _transport.WriteConfig32(BootReasonOffset, 0);
        }

        return reason;
    }

    internal void StartWatchdog(TimeSpan timeout, TimeSpan pretimeout)
    {
        Control(Start, (uint)timeout.TotalMilliseconds);
        if (pretimeout > TimeSpan.Zero)
        {
            Control(SetPretimeout, (uint)pretimeout.TotalMilliseconds);
        }

        Kernel($"watchdog: watchdog0: started, timeout {timeout.TotalSeconds:0.0} s{(pretimeout > TimeSpan.Zero ? $", pretimeout {pretimeout.TotalSeconds:0.0} s" : string.Empty)}");
    }

    internal void Pet() => Control(Keepalive, 0);

    internal void StopWatchdog()
    {
        Control(Stop, 0);
        Kernel("watchdog: watchdog0: stopped (magic close)");
    }

    // Handles pretimeout notices the device returned (the noticeq callback).
    internal void PollNotices()
    {
        while (_noticeq!.TryGetUsed(out UsedBuffer used) == UsedBufferStatus.Ok)
        {
            Kernel("watchdog: watchdog0: pretimeout notice from the device — dumping state before the bite");
            _ = used;
        }
    }

    // The panic notifier: the next posted record, committed, then a notification; panic_events if it stays pending.
    internal void ReportPanic(ushort type, string message, string logTail)
    {
        uint events = type switch
        {
            RecordPanic => 1u,
            RecordCrashLoaded => 2u,
            _ => 4u,
        };
        if (_records.Count == 0)
        {
            _transport.WriteConfig32(PanicEventsOffset, events);
            return;
        }

        (ulong record, ulong status) = _records.Dequeue();
        byte[] text = Encoding.UTF8.GetBytes(message);
        byte[] tail = Encoding.UTF8.GetBytes(logTail);
        byte[] bytes = new byte[80 + text.Length + tail.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), type);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), ++_recordSequence);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), 0);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(16), (ulong)_uptime.Elapsed.Ticks * 100);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(0x40), (ushort)text.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(0x44), (uint)tail.Length);
        text.CopyTo(bytes, 80);
        tail.CopyTo(bytes, 80 + text.Length);
        _memory.TryWrite(record + 4, bytes.AsSpan(4));
        Interlocked.MemoryBarrier(); // the record is complete before it is committed (spec §6.5.2)
        _memory.TryWriteUInt32(record, Committed);
        _transport.Kick(1);

        // Bounded poll of the status byte, then the minimal path.
        for (int i = 0; i < 100; i++)
        {
            if (ReadByte(status) != 0)
            {
                return;
            }

            Thread.Sleep(1);
        }

        _transport.WriteConfig32(PanicEventsOffset, events);
    }

    internal void Panic(string message, string logTail) => ReportPanic(RecordPanic, message, logTail);

    internal void CrashLoaded(string message, string logTail) => ReportPanic(RecordCrashLoaded, message, logTail);

    internal void ReportShutdown() => ReportPanic(RecordShutdown, "reboot: Power down", string.Empty);

    // The minimal path alone, as a crash kernel without the eventq driver would use it.
    internal void PanicEvents(uint bits) => _transport.WriteConfig32(PanicEventsOffset, bits);

    // The driver resets the device (a crash kernel probing it, a driver unload).
    internal void ResetDevice() => _transport.WriteStatus(0);

    internal void Kernel(string line) => HostLog.GuestKernel(_log, _uptime.Elapsed.TotalSeconds, line);

    private static string Name(WatchdogBootReason reason) => reason switch
    {
        WatchdogBootReason.Watchdog => "WATCHDOG",
        WatchdogBootReason.Panic => "PANIC",
        WatchdogBootReason.Host => "HOST",
        _ => "NONE",
    };

    private byte ReadByte(ulong address)
    {
        Span<byte> b = stackalloc byte[1];
        _memory.TryRead(address, b);
        return b[0];
    }

    private IVirtqueueDriver Queue(int index, ushort size)
    {
        IVirtqueueDriver driver = _packed ? PackedRingDriver.Allocate(_allocator, size, eventIndex: false) : SplitRingDriver.Allocate(_allocator, size, eventIndex: false);
        var config = driver.Config;
        _transport.SetUpQueue(index, config.Size, config.DescriptorArea, config.DriverArea, config.DeviceArea);
        return driver;
    }

    private static void Post(IVirtqueueDriver queue, params DriverBuffer[] buffers)
    {
        if (!queue.TryAdd(buffers, out _))
        {
            throw new InvalidOperationException("guest ring full");
        }

        queue.Publish();
    }

    // A control request on watchdogq; waits (bounded) for the response like the watchdog core's callbacks may.
    private void Control(ushort command, uint valueMs)
    {
        ulong request = _allocator.Allocate(16, 16);
        ulong response = _allocator.Allocate(16, 16);
        Span<byte> bytes = stackalloc byte[16];
        bytes.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, command);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes[4..], valueMs);
        _memory.TryWrite(request, bytes);
        Post(_watchdogq!, new DriverBuffer(request, 16, DeviceWritable: false), new DriverBuffer(response, 16, DeviceWritable: true));
        _transport.Kick(0);
        var deadline = Stopwatch.StartNew();
        while (_watchdogq!.TryGetUsed(out _) != UsedBufferStatus.Ok)
        {
            _vm.Checkpoint(allowInterrupts: false);
            if (deadline.Elapsed > TimeSpan.FromSeconds(2))
            {
                throw new TimeoutException("watchdogq request timed out");
            }

            _interrupts.Wait(TimeSpan.FromMilliseconds(5));
        }

        ushort status = (ushort)(ReadByte(response) | (ReadByte(response + 1) << 8));
        if (status != 0)
        {
            Kernel($"virtio_wdt virtio0: request {command} failed with status {status}");
        }

        // Requests are small and few: recycle the allocator only at the next boot.
        _ = response;
    }
}
