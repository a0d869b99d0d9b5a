using System.Buffers.Binary;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Hosting.Tests.Rig;

// A watchdog device on a FakeTimeProvider with a minimal guest: heartbeats on watchdogq (split
// ring from the GuestDriver harness), panic records on eventq, and the panic_events config field.
internal sealed class GuestRig : IDisposable
{
    public const uint PanicEventsOffset = 8;
    private const ulong RamBase = 0x100000;
    private const ulong RamSize = 1 << 20;

    private readonly Virtqueue[] _queues = [new Virtqueue(256), new Virtqueue(256), new Virtqueue(64)];
    private readonly GuestAllocator _allocator;
    private SplitRingDriver? _watchdogq;
    private SplitRingDriver? _eventq;

    public GuestRig(FakeTimeProvider time, string id = "wdt0", TimeSpan? timeout = null)
    {
        Time = time;
        Memory = GuestMemory.CreateAnonymous(RamSize, RamBase);
        _allocator = new GuestAllocator(Memory, RamBase, RamSize);
        Device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = id, DefaultTimeout = timeout ?? TimeSpan.FromSeconds(5), ResumeGrace = TimeSpan.FromSeconds(1) }, time);
    }

    public FakeTimeProvider Time { get; }

    public GuestMemory Memory { get; }

    public WatchdogDevice Device { get; }

    // Driver init with EVENTS (and the minimal path) and both queues.
    public void Boot()
    {
        _allocator.Reset();
        foreach (Virtqueue queue in _queues)
        {
            queue.Reset();
        }

        ulong features = (ulong)(WatchdogFeatures.Events | WatchdogFeatures.PanicConfig | WatchdogFeatures.BootReason) | VirtioFeatures.Version1;
        Assert.That(Device.AcceptFeatures(features), Is.True);
        _watchdogq = SplitRingDriver.Allocate(_allocator, 16, eventIndex: false);
        _eventq = SplitRingDriver.Allocate(_allocator, 16, eventIndex: false);
        Assert.That(_queues[0].Activate(Memory, _watchdogq.Config, VirtqueueFeatures.None), Is.EqualTo(VirtqueueStatus.Ok));
        Assert.That(_queues[1].Activate(Memory, _eventq.Config, VirtqueueFeatures.None), Is.EqualTo(VirtqueueStatus.Ok));
        Device.Activate(new TestDeviceContext(Memory, features, _queues));
    }

    // The guest reboots: the transport resets the device.
    public void Reboot()
    {
        Device.Reset();
        Boot();
    }

    public void Heartbeat()
    {
        ulong buffer = _allocator.Allocate(8, 16);
        Assert.That(_watchdogq!.TryAdd([new DriverBuffer(buffer, 8, DeviceWritable: true)], out _), Is.True);
        _watchdogq.Publish();
        Device.Notify(0);
        SpinWait.SpinUntil(() => _watchdogq.TryGetUsed(out _) == UsedBufferStatus.Ok, 5000);
    }

    public void WritePanicEvents(uint bits)
    {
        Span<byte> value = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(value, bits);
        Device.WriteConfig(PanicEventsOffset, value);
    }

    public void Panic() => WritePanicEvents(1);

    public void CrashLoaded() => WritePanicEvents(2);

    public void Shutdown() => WritePanicEvents(4);

    // A rich panic record (spec §6.5.1): committed, then notified, as a panic notifier does.
    public void PanicRecord(string message, uint vcpu, params ulong[] codes)
    {
        byte[] text = Encoding.UTF8.GetBytes(message);
        uint length = (uint)(80 + text.Length);
        ulong record = _allocator.Allocate(length, 16);
        ulong status = _allocator.Allocate(8, 16);
        Assert.That(_eventq!.TryAdd([new DriverBuffer(record, length, DeviceWritable: false), new DriverBuffer(status, 8, DeviceWritable: true)], out _), Is.True);
        _eventq.Publish();
        Device.Notify(1);
        byte[] bytes = new byte[length];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), 1);
        bytes[6] = (byte)codes.Length;
        bytes[7] = codes.Length > 0 ? (byte)PanicCodeFormat.WindowsBugcheck : (byte)0;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), vcpu);
        for (int i = 0; i < codes.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(24 + (8 * i)), codes[i]);
        }

        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(0x40), (ushort)text.Length);
        text.CopyTo(bytes, 80);
        Assert.That(Memory.TryWrite(record + 4, bytes.AsSpan(4)), Is.True);
        Interlocked.MemoryBarrier();
        Assert.That(Memory.TryWriteUInt32(record, 0x4D4D4F43), Is.True);
        Device.Notify(1);
    }

    public void Dispose()
    {
        Device.Dispose();
        Memory.Dispose();
    }
}
