using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport.Tests.Fakes;

// Records what the transport asked the hypervisor to do with interrupts.
internal sealed class RecordingInterruptSink : IInterruptSink
{
    private readonly Lock _lock = new();
    private readonly List<(ulong Address, uint Data)> _messages = [];
    private bool _level;

    internal int LevelChanges { get; private set; }

    internal bool Level
    {
        get
        {
            lock (_lock)
            {
                return _level;
            }
        }
    }

    internal (ulong Address, uint Data)[] Messages
    {
        get
        {
            lock (_lock)
            {
                return [.. _messages];
            }
        }
    }

    public void SignalMsi(ulong address, uint data)
    {
        lock (_lock)
        {
            _messages.Add((address, data));
        }
    }

    public void SetIntxLevel(bool asserted)
    {
        lock (_lock)
        {
            if (_level != asserted)
            {
                LevelChanges++;
            }

            _level = asserted;
        }
    }

    internal void Clear()
    {
        lock (_lock)
        {
            _messages.Clear();
        }
    }
}
