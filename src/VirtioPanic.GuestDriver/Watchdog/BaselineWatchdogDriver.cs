using VirtioPanic.Device;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.GuestDriver.Virtio;

namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>
/// A driver that speaks only the baseline heartbeat protocol, as the out-of-tree Linux driver for
/// Cloud Hypervisor's ID-35 device does: no device feature, one queue, and a fixed-interval
/// heartbeat that posts one 8-byte device-writable buffer and checks the device wrote 1 into it.
/// The first heartbeat arms the device's watchdog; the driver cannot stop it.
/// </summary>
/// <remarks>Guest code: create it with <see cref="Probe"/> and call it on the vCPU. Heartbeats run as a timer on the machine clock.</remarks>
public sealed class BaselineWatchdogDriver
{
    /// <summary>The heartbeat interval of the out-of-tree driver.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(15);

    private readonly GuestVirtioDevice _device;
    private readonly GuestKernel _kernel;
    private readonly TimeSpan _requestTimeout;
    private readonly ulong _buffer;
    private ITimer? _timer;
    private long _heartbeats;
    private long _faults;

    private BaselineWatchdogDriver(GuestVirtioDevice device, ulong buffer, TimeSpan requestTimeout)
    {
        _device = device;
        _kernel = device.Kernel;
        _buffer = buffer;
        _requestTimeout = requestTimeout;
    }

    /// <summary>Heartbeats the device answered with 1.</summary>
    public long Heartbeats => Interlocked.Read(ref _heartbeats);

    /// <summary>Heartbeats not answered, or answered with another value.</summary>
    public long Faults => Interlocked.Read(ref _faults);

    /// <summary>The heartbeat interval while <see cref="Start"/>ed.</summary>
    public TimeSpan Interval { get; private set; }

    /// <summary>Initializes the device with no device-specific feature and queue 0 only.</summary>
    /// <param name="device">A virtio device with ID 35.</param>
    /// <param name="requestTimeout">How long a heartbeat may take on the machine clock; 1 second when null.</param>
    public static BaselineWatchdogDriver Probe(GuestVirtioDevice device, TimeSpan? requestTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.DeviceId != WatchdogDevice.VirtioDeviceId)
        {
            throw new InvalidOperationException($"{device.Location} is not a watchdog (device ID {device.DeviceId}).");
        }

        VirtioInitResult result = device.Initialize(new VirtioDriverOptions { Features = 0, Queues = [new QueueSetup(0, 8)] });
        if (result != VirtioInitResult.Ok)
        {
            throw new InvalidOperationException($"{device.Location}: initialization failed ({result}).");
        }

        return new BaselineWatchdogDriver(device, device.Kernel.AllocateBuffer(8), requestTimeout ?? TimeSpan.FromSeconds(1));
    }

    /// <summary>One heartbeat: zero the buffer, post it writable, kick, wait for it, check its first byte is 1.</summary>
    /// <returns>True when the device answered with 1.</returns>
    public bool Heartbeat()
    {
        _kernel.WriteMemory(_buffer, new byte[8]);
        GuestVirtqueue queue = _device.Queue(0);
        bool answered = false;
        if (queue.TryAdd([new DriverBuffer(_buffer, 8, DeviceWritable: true)]))
        {
            queue.Kick();
            answered = queue.WaitForUsed(_requestTimeout, out UsedBuffer used, out _)
                && used.Length == 8
                && _kernel.ReadMemory(_buffer, 1)[0] == 1;
        }

        Interlocked.Increment(ref answered ? ref _heartbeats : ref _faults);
        return answered;
    }

    /// <summary>Sends a heartbeat now and then every <paramref name="interval"/> (default 15 seconds).</summary>
    /// <param name="interval">The heartbeat interval.</param>
    public bool Start(TimeSpan? interval = null)
    {
        Interval = interval ?? DefaultInterval;
        _timer?.Dispose();
        bool ok = Heartbeat();
        _timer = _kernel.Cpu.StartTimer(() => Heartbeat(), Interval, Interval);
        return ok;
    }

    /// <summary>Stops sending heartbeats (the device's watchdog keeps counting and will bite).</summary>
    public void StopHeartbeats()
    {
        _timer?.Dispose();
        _timer = null;
    }
}
