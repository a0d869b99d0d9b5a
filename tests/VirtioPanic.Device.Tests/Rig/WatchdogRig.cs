using System.Buffers.Binary;
using Microsoft.Extensions.Time.Testing;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Device.Tests.Rig;

// A device under test with a fake transport: guarded guest memory, real Virtqueues driven by the
// guest-side SplitRingDriver, and a FakeTimeProvider. Plays both the transport (Activate, Reset,
// Notify) and a minimal guest driver (heartbeats, control requests, records, notice buffers).
internal sealed class WatchdogRig : IDisposable
{
    public const ulong RamBase = 0x100000;
    public const ulong RamSize = 4 << 20;

    private readonly bool _ownsMemory;

    public WatchdogRig(WatchdogDeviceOptions? options = null, GuestMemory? memory = null, ulong allocatorBase = RamBase, ulong allocatorSize = RamSize, IVcpuRunClock? vcpuClock = null)
    {
        Time = new FakeTimeProvider(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));
        _ownsMemory = memory is null;
        Memory = memory ?? GuestMemory.CreateAnonymous(RamSize, RamBase);
        Allocator = new GuestAllocator(Memory, allocatorBase, allocatorSize);
        Options = options ?? new WatchdogDeviceOptions();
        Device = new WatchdogDevice(Options, Time, vcpuClock: vcpuClock);
    }

    public FakeTimeProvider Time { get; }

    public GuestMemory Memory { get; }

    public GuestAllocator Allocator { get; }

    public WatchdogDeviceOptions Options { get; }

    public WatchdogDevice Device { get; }

    public TestDeviceContext? Context { get; private set; }

    public SplitRingDriver?[] Drivers { get; } = new SplitRingDriver?[3];

    public Virtqueue[] Queues { get; } = [new Virtqueue(256), new Virtqueue(256), new Virtqueue(64)];

    public IVirtioDevice Virtio => Device;

    public static WatchdogRig Started(WatchdogFeatures features, WatchdogDeviceOptions? options = null, bool eventIndex = false)
    {
        var rig = new WatchdogRig(options);
        rig.Activate(features, eventIndex: eventIndex);
        return rig;
    }

    // Driver initialization: accept features (those of `features` the device offers: All leaves out
    // VCPU_STALL without a vCPU count), set up the queues they need, DRIVER_OK.
    public void Activate(WatchdogFeatures features, bool? eventQueue = null, bool? noticeQueue = null, bool eventIndex = false, ushort size = 16)
    {
        features &= Device.OfferedFeatures;
        ulong negotiated = (ulong)features | VirtioFeatures.Version1 | (eventIndex ? VirtioFeatures.EventIndex : 0);
        Assert.That(Device.AcceptFeatures(negotiated), Is.True, "the device refused the feature set");
        SetUpQueue(0, size, eventIndex);
        if (eventQueue ?? (features & WatchdogFeatures.Events) != 0)
        {
            SetUpQueue(1, size, eventIndex);
        }

        if (noticeQueue ?? (features & (WatchdogFeatures.Pretimeout | WatchdogFeatures.VcpuStall)) != 0)
        {
            SetUpQueue(2, size, eventIndex);
        }

        Context = new TestDeviceContext(Memory, negotiated, Queues);
        Device.Activate(Context);
    }

    public void SetUpQueue(int index, ushort size, bool eventIndex)
    {
        SplitRingDriver driver = SplitRingDriver.Allocate(Allocator, size, eventIndex);
        Assert.That(Queues[index].Activate(Memory, driver.Config, eventIndex ? VirtqueueFeatures.EventIndex : VirtqueueFeatures.None), Is.EqualTo(VirtqueueStatus.Ok));
        Drivers[index] = driver;
    }

    // Device reset as a transport performs it: the device first, then the queues.
    public void ResetDevice()
    {
        Device.Reset();
        foreach (Virtqueue queue in Queues)
        {
            queue.Reset();
        }

        Array.Clear(Drivers);
        Context = null;
    }

    public ulong Buffer(uint length) => Allocator.Allocate(length, 16);

    // --- watchdogq ---

    public UsedBuffer PostHeartbeatAndNotify(out ulong address, uint length = 8)
    {
        address = Buffer(length);
        PostChain(0, new DriverBuffer(address, length, DeviceWritable: true));
        Device.Notify(0);
        return TakeUsed(0);
    }

    public byte Heartbeat(uint length = 8)
    {
        UsedBuffer used = PostHeartbeatAndNotify(out ulong address, length);
        Assert.That(used.Length, Is.EqualTo(length), "heartbeat used length");
        Assert.That(Memory.TryRead(address, new byte[1]), Is.True);
        byte[] value = new byte[1];
        Memory.TryRead(address, value);
        return value[0];
    }

    public ControlResult Control(ushort command, uint valueMs = 0, uint requestLength = 16, uint responseLength = 16)
    {
        ulong request = Buffer(Math.Max(requestLength, 16));
        ulong response = Buffer(Math.Max(responseLength, 16));
        byte[] bytes = new byte[16];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, command);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), valueMs);
        Memory.TryWrite(request, bytes);
        PostChain(0, new DriverBuffer(request, requestLength, DeviceWritable: false), new DriverBuffer(response, responseLength, DeviceWritable: true));
        Device.Notify(0);
        UsedBuffer used = TakeUsed(0);
        byte[] r = new byte[16];
        Memory.TryRead(response, r);
        return new ControlResult(
            BinaryPrimitives.ReadUInt16LittleEndian(r),
            BinaryPrimitives.ReadUInt16LittleEndian(r.AsSpan(2)),
            BinaryPrimitives.ReadUInt32LittleEndian(r.AsSpan(4)),
            BinaryPrimitives.ReadUInt32LittleEndian(r.AsSpan(8)),
            BinaryPrimitives.ReadUInt32LittleEndian(r.AsSpan(12)),
            used.Length);
    }

    // --- eventq ---

    public PostedRecord PostRecordBuffer(uint recordLength = 80 + 1024 + 16384, uint statusLength = 8, bool notify = true)
    {
        ulong record = Buffer(recordLength);
        ulong status = statusLength == 0 ? 0 : Buffer(statusLength);
        ushort head = statusLength == 0
            ? PostChain(1, new DriverBuffer(record, recordLength, DeviceWritable: false))
            : PostChain(1, new DriverBuffer(record, recordLength, DeviceWritable: false), new DriverBuffer(status, statusLength, DeviceWritable: true));
        if (notify)
        {
            Device.Notify(1);
        }

        return new PostedRecord(head, record, recordLength, status, statusLength);
    }

    // Fills the record, commits it (state written last) and notifies, as a panic handler would.
    public void Commit(PostedRecord posted, RecordSpec spec, bool notify = true)
    {
        byte[] bytes = spec.ToBytes();
        Assert.That(Memory.TryWrite(posted.RecordAddress + 4, bytes.AsSpan(4)), Is.True);
        Span<byte> state = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(state, spec.State);
        Interlocked.MemoryBarrier();
        Assert.That(Memory.TryWrite(posted.RecordAddress, state), Is.True);
        if (notify)
        {
            Device.Notify(1);
        }
    }

    public (byte Status, uint HostSequence) ReadStatus(PostedRecord posted)
    {
        byte[] status = new byte[8];
        Memory.TryRead(posted.StatusAddress, status);
        return (status[0], BinaryPrimitives.ReadUInt32LittleEndian(status.AsSpan(4)));
    }

    // --- noticeq ---

    public ulong PostNoticeBuffer(uint length = 16, bool notify = true)
    {
        ulong address = Buffer(length);
        PostChain(2, new DriverBuffer(address, length, DeviceWritable: true));
        if (notify)
        {
            Device.Notify(2);
        }

        return address;
    }

    // --- rings ---

    public ushort PostChain(int queue, params DriverBuffer[] buffers)
    {
        SplitRingDriver driver = Drivers[queue] ?? throw new InvalidOperationException($"queue {queue} is not set up");
        Assert.That(driver.TryAdd(buffers, out ushort head), Is.True, "ring full");
        driver.Publish();
        return head;
    }

    public UsedBuffer TakeUsed(int queue)
    {
        Assert.That(Drivers[queue]!.TryGetUsed(out UsedBuffer used), Is.EqualTo(UsedBufferStatus.Ok), $"no used buffer on queue {queue}");
        return used;
    }

    public bool TryTakeUsed(int queue, out UsedBuffer used) => Drivers[queue]!.TryGetUsed(out used) == UsedBufferStatus.Ok;

    // --- config ---

    public uint ReadConfig32(uint offset)
    {
        Span<byte> data = stackalloc byte[4];
        Device.ReadConfig(offset, data);
        return BinaryPrimitives.ReadUInt32LittleEndian(data);
    }

    public void WriteConfig32(uint offset, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        Device.WriteConfig(offset, data);

        // The post-access step every transport runs after a configuration write.
        Device.AfterConfigWrite();
    }

    // --- events ---

    public List<WatchdogEvent> DrainEvents()
    {
        var events = new List<WatchdogEvent>();
        while (Device.Events.TryRead(out WatchdogEvent? evt))
        {
            events.Add(evt);
        }

        return events;
    }

    public List<T> Drain<T>()
        where T : WatchdogEvent => [.. DrainEvents().OfType<T>()];

    public void Dispose()
    {
        Device.Dispose();
        if (_ownsMemory)
        {
            Memory.Dispose();
        }
    }
}
