using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.VhostUser;

// What the device gets at activation when it is served over vhost-user. Notifications go to the
// front end's eventfds (the call fd per ring, the err fd on a fatal device error) and a
// configuration change travels as CONFIG_CHANGE_MSG on the back-end request channel when the
// front end set one up.
//
// A context belongs to one activation: once the session stops the device (ring stop, reset,
// disconnect) it is closed, and late calls from device threads are ignored.
internal sealed class VhostUserDeviceContext : IVirtioDeviceContext
{
    private readonly VhostUserSession _session;
    private readonly VhostUserRing[] _rings;
    private volatile bool _closed;

    internal VhostUserDeviceContext(VhostUserSession session, GuestMemory memory, ulong negotiatedFeatures, VhostUserRing[] rings)
    {
        _session = session;
        Memory = memory;
        NegotiatedFeatures = negotiatedFeatures;
        _rings = rings;
    }

    public GuestMemory Memory { get; }

    public ulong NegotiatedFeatures { get; }

    internal bool IsClosed => _closed;

    public Virtqueue GetQueue(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _rings.Length);
        return _rings[index].Queue;
    }

    public void SignalUsedBuffers(int queueIndex)
    {
        if (_closed || (uint)queueIndex >= (uint)_rings.Length)
        {
            return;
        }

        _session.OnSignalUsedBuffers(_rings[queueIndex]);
    }

    public void SignalConfigChange()
    {
        if (!_closed)
        {
            _session.OnConfigChange();
        }
    }

    public void SetNeedsReset()
    {
        if (!_closed)
        {
            _session.OnNeedsReset();
        }
    }

    internal void Close() => _closed = true;
}
