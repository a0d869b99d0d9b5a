namespace VirtioPanic.Virtio.Device;

/// <summary>
/// The contract every virtio device function implements, independent of its transport. A
/// transport (virtio-pci, virtio-mmio, vhost-user) owns the device status machine and feature
/// negotiation and calls these members; the device owns its configuration space and its queues'
/// contents.
/// </summary>
/// <remarks>
/// <para>Threading: configuration accesses, <see cref="Activate"/>, <see cref="Reset"/> and
/// <see cref="ResetQueue"/> arrive from vCPU threads, serialized by the transport.
/// <see cref="Notify"/> may arrive concurrently from any vCPU thread and must neither block nor
/// take a lock the control path holds for long.</para>
/// </remarks>
public interface IVirtioDevice
{
    /// <summary>The virtio device ID (virtio 1.2 §5), e.g. 35 for the watchdog.</summary>
    uint DeviceId { get; }

    /// <summary>
    /// Feature bits the device offers: device-type bits plus any ring features from
    /// <see cref="VirtioFeatures.RingFeatures"/> it supports. The transport adds VIRTIO_F_VERSION_1.
    /// </summary>
    ulong DeviceFeatures { get; }

    /// <summary>Number of virtqueues (num_queues).</summary>
    int QueueCount { get; }

    /// <summary>Size in bytes of the device-specific configuration space (0 when there is none).</summary>
    int ConfigSize { get; }

    /// <summary>The largest size the device supports for a queue (queue_size after reset; a power of two).</summary>
    /// <param name="queueIndex">Queue index.</param>
    ushort GetMaxQueueSize(int queueIndex);

    /// <summary>
    /// Reads device-specific configuration. The transport guarantees
    /// <c>offset + data.Length &lt;= ConfigSize</c>; the device fills every byte.
    /// </summary>
    /// <param name="offset">Byte offset in the configuration space.</param>
    /// <param name="data">Destination, 1 to 8 bytes for a register access, more for a bulk read.</param>
    void ReadConfig(uint offset, Span<byte> data);

    /// <summary>
    /// Writes device-specific configuration. The transport guarantees the range is in bounds; the
    /// device validates the value and ignores writes to read-only fields.
    /// </summary>
    /// <param name="offset">Byte offset in the configuration space.</param>
    /// <param name="data">The bytes written by the driver.</param>
    void WriteConfig(uint offset, ReadOnlySpan<byte> data);

    /// <summary>
    /// The post-access step of a configuration write: the transport calls it after every
    /// <see cref="WriteConfig"/>, on the same thread, once it has released the locks it held for
    /// the access and before the driver's write completes. A device does here what must not run
    /// under the transport's lock, such as a host callback that may reset the device or the
    /// transport. The default does nothing.
    /// </summary>
    void AfterConfigWrite()
    {
    }

    /// <summary>
    /// Lets the device veto a feature subset at FEATURES_OK beyond the transport's checks (all
    /// accepted bits offered, VERSION_1 present). Return false to leave FEATURES_OK unset.
    /// </summary>
    /// <param name="features">The subset the driver accepted.</param>
    bool AcceptFeatures(ulong features);

    /// <summary>The driver set DRIVER_OK: start processing the context's queues (including buffers already made available).</summary>
    /// <param name="context">Memory, features, queues and notification paths for this session.</param>
    void Activate(IVirtioDeviceContext context);

    /// <summary>
    /// An available-buffer notification (a kick) for a queue. Only called for an enabled queue of
    /// an activated device.
    /// </summary>
    /// <param name="queueIndex">Queue index.</param>
    void Notify(int queueIndex);

    /// <summary>
    /// Per-queue reset (VIRTIO_F_RING_RESET): stop using the queue; the transport resets its ring
    /// state after this returns. Return only once the device no longer touches that queue.
    /// </summary>
    /// <param name="queueIndex">Queue index.</param>
    void ResetQueue(int queueIndex);

    /// <summary>
    /// Device reset (the driver wrote 0 to the status, or the transport was reset). Return only
    /// once the device has stopped touching guest memory and holds no buffers; the device goes back
    /// to its power-on state, except for state the device contract says survives a reset.
    /// </summary>
    void Reset();

    /// <summary>
    /// The transport is being restored from a snapshot: stop touching guest memory and forget the
    /// driver session exactly as <see cref="Reset"/> does, but without the side effects of a reset
    /// the guest asked for (events, disarming timers): the device's own state is restored
    /// separately, from its own snapshot, after the transport. The default is <see cref="Reset"/>.
    /// </summary>
    void Quiesce() => Reset();

    /// <summary>
    /// The transport's rings stopped for a reason it cannot name (vhost-user: <c>GET_VRING_BASE</c>,
    /// which a front end sends both when the VM stops and when the driver resets the device): stop
    /// touching guest memory and the rings as <see cref="Reset"/> does, but keep the driver session
    /// (negotiated features, buffers the device holds, its own timers stopped) so that
    /// <see cref="TryResume"/> can continue it on the same rings. Called with every ring still
    /// usable; the device may complete buffers it must not leave behind before it returns.
    /// The default resets the device and returns false.
    /// </summary>
    /// <returns>True when the session is kept for <see cref="TryResume"/>; false when the device reset itself instead.</returns>
    bool Suspend()
    {
        Reset();
        return false;
    }

    /// <summary>
    /// Continues the session kept by <see cref="Suspend"/> on rings that restarted exactly where
    /// they stopped. Returns false (and changes nothing) when no session is kept, for example
    /// because the device was reset in between: the transport then calls <see cref="Activate"/>.
    /// The default returns false.
    /// </summary>
    /// <param name="context">The new context: the same rings at the same positions, memory as now mapped.</param>
    /// <returns>True when the kept session continues.</returns>
    bool TryResume(IVirtioDeviceContext context) => false;
}
