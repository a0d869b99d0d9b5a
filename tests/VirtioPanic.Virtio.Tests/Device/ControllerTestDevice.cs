using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Virtio.Tests.Device;

// A minimal device for controller tests: records what the controller asks of it, and can run
// a callback inside Activate (to act like a device that signals while being activated).
internal sealed class ControllerTestDevice : IVirtioDevice
{
    private int _notifies;
    private int _notifiesWhileDown;
    private volatile bool _live;

    internal ControllerTestDevice(ulong features = 1, ushort maxQueueSize = 16, int queueCount = 2)
    {
        DeviceFeatures = features;
        MaxQueueSize = maxQueueSize;
        QueueCount = queueCount;
    }

    public uint DeviceId => 35;

    public ulong DeviceFeatures { get; }

    public int QueueCount { get; }

    public int ConfigSize => 4;

    internal ushort MaxQueueSize { get; }

    internal bool Accept { get; set; } = true;

    internal Action<IVirtioDeviceContext>? OnActivate { get; set; }

    internal IVirtioDeviceContext? Context { get; private set; }

    internal int Notifies => Volatile.Read(ref _notifies);

    // Kicks that arrived while the device was not activated: the controller must never deliver one.
    internal int NotifiesWhileDown => Volatile.Read(ref _notifiesWhileDown);

    internal int Resets { get; private set; }

    internal List<int> QueueResets { get; } = [];

    public ushort GetMaxQueueSize(int queueIndex) => MaxQueueSize;

    public void ReadConfig(uint offset, Span<byte> data) => data.Fill(0x5A);

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data) => Calls.Add(nameof(WriteConfig));

    public void AfterConfigWrite()
    {
        Calls.Add(nameof(AfterConfigWrite));
        OnAfterConfigWrite?.Invoke();
    }

    // The order of the configuration-write calls the controller made.
    internal List<string> Calls { get; } = [];

    internal Action? OnAfterConfigWrite { get; set; }

    public bool AcceptFeatures(ulong features) => Accept;

    public void Activate(IVirtioDeviceContext context)
    {
        Context = context;
        _live = true;
        OnActivate?.Invoke(context);
    }

    public void Notify(int queueIndex)
    {
        Interlocked.Increment(ref _notifies);
        if (!_live)
        {
            Interlocked.Increment(ref _notifiesWhileDown);
        }
    }

    public void ResetQueue(int queueIndex) => QueueResets.Add(queueIndex);

    public void Reset()
    {
        _live = false;
        Context = null;
        Resets++;
    }

    internal int Quiesces { get; private set; }

    public void Quiesce()
    {
        _live = false;
        Context = null;
        Quiesces++;
    }
}
