namespace VirtioPanic.VhostUser;

/// <summary>
/// Counters of a <see cref="VhostUserBackend"/>, for metrics and tests. Every member is safe to read
/// from any thread while the back end runs; values only grow, except the negotiated feature sets,
/// which describe the most recent connection.
/// </summary>
public sealed class VhostUserStatistics
{
    private long _connectionsAccepted;
    private long _connectionsClosed;
    private long _connectionsRefused;
    private long _messagesHandled;
    private long _messagesRejected;
    private long _kicks;
    private long _usedBufferNotifications;
    private long _deviceActivations;
    private long _deviceSuspensions;
    private long _deviceResumptions;
    private long _negotiatedFeatures;
    private long _negotiatedProtocolFeatures;

    internal VhostUserStatistics()
    {
    }

    /// <summary>Front-end connections accepted.</summary>
    public long ConnectionsAccepted => Interlocked.Read(ref _connectionsAccepted);

    /// <summary>Front-end connections that ended and were fully cleaned up (rings stopped, memory unmapped, descriptors closed).</summary>
    public long ConnectionsClosed => Interlocked.Read(ref _connectionsClosed);

    /// <summary>Connection attempts closed at once because another front end was being served (one front end per socket).</summary>
    public long ConnectionsRefused => Interlocked.Read(ref _connectionsRefused);

    /// <summary>Messages read and answered successfully.</summary>
    public long MessagesHandled => Interlocked.Read(ref _messagesHandled);

    /// <summary>Messages refused: unsupported, malformed, or invalid in the current state.</summary>
    public long MessagesRejected => Interlocked.Read(ref _messagesRejected);

    /// <summary>Available-buffer notifications (kick eventfd wake-ups) delivered to the device.</summary>
    public long Kicks => Interlocked.Read(ref _kicks);

    /// <summary>Used-buffer notifications written to a call eventfd.</summary>
    public long UsedBufferNotifications => Interlocked.Read(ref _usedBufferNotifications);

    /// <summary>Times the device was activated (once per started set of rings).</summary>
    public long DeviceActivations => Interlocked.Read(ref _deviceActivations);

    /// <summary>Stops of every ring after which the device kept its session (a VM stop or a driver reset; see <see cref="VirtioPanic.Virtio.Device.IVirtioDevice.Suspend"/>).</summary>
    public long DeviceSuspensions => Interlocked.Read(ref _deviceSuspensions);

    /// <summary>Suspended sessions that continued because every ring restarted exactly where it stopped (a VM that continued).</summary>
    public long DeviceResumptions => Interlocked.Read(ref _deviceResumptions);

    /// <summary>
    /// The virtio feature bits the device got from the most recent accepted SET_FEATURES:
    /// VHOST_USER_F_PROTOCOL_FEATURES and ignored unoffered bits removed.
    /// </summary>
    public ulong NegotiatedFeatures => (ulong)Interlocked.Read(ref _negotiatedFeatures);

    /// <summary>The protocol feature bits of the most recent SET_PROTOCOL_FEATURES.</summary>
    public ulong NegotiatedProtocolFeatures => (ulong)Interlocked.Read(ref _negotiatedProtocolFeatures);

    internal void OnConnectionAccepted() => Interlocked.Increment(ref _connectionsAccepted);

    internal void OnConnectionClosed() => Interlocked.Increment(ref _connectionsClosed);

    internal void OnConnectionRefused() => Interlocked.Increment(ref _connectionsRefused);

    internal void OnMessageHandled() => Interlocked.Increment(ref _messagesHandled);

    internal void OnMessageRejected() => Interlocked.Increment(ref _messagesRejected);

    internal void OnKick() => Interlocked.Increment(ref _kicks);

    internal void OnUsedBufferNotification() => Interlocked.Increment(ref _usedBufferNotifications);

    internal void OnDeviceActivated() => Interlocked.Increment(ref _deviceActivations);

    internal void OnDeviceSuspended() => Interlocked.Increment(ref _deviceSuspensions);

    internal void OnDeviceResumed() => Interlocked.Increment(ref _deviceResumptions);

    internal void SetNegotiatedFeatures(ulong features) => Interlocked.Exchange(ref _negotiatedFeatures, (long)features);

    internal void SetNegotiatedProtocolFeatures(ulong features) => Interlocked.Exchange(ref _negotiatedProtocolFeatures, (long)features);
}
