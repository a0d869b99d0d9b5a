using System.Diagnostics;
using VirtioPanic.Snapshots;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Device;

// Snapshot format, version 1 (all little-endian):
//
//   u32 magic "VPDC"   u16 version
//   u32 device id      u64 offered features   u32 queue count   u32 config size
//   u8  status         u32 device_feature_select   u32 driver_feature_select
//   u64 driver features (as written)   u64 negotiated features   u32 queue_select
//   u32 config generation   u8 generation observed
//   per queue: u16 max size, u16 size, u64 desc, u64 driver, u64 device, u8 enabled,
//              u16 next avail, u16 next used, u8 avail wrap, u8 used wrap
//
// Restore treats the bytes as guest input: every field is checked against the live device and
// against the invariants the control path maintains, and the rings are validated against guest
// memory by the queue engine, before anything is applied.
public sealed partial class VirtioDeviceController
{
    private const uint SnapshotMagic = 0x4344_5056;   // "VPDC"
    private const ushort SnapshotVersion = 1;

    /// <summary>
    /// Captures the controller's whole state: status, features, selectors, configuration
    /// generation, every queue's registers and ring progress. The device's own state is not
    /// included; the device saves it itself.
    /// </summary>
    /// <remarks>Call with the guest's vCPUs paused and the device's workers quiesced: the queue
    /// engine's consumer-side state is read here.</remarks>
    public byte[] SaveState()
    {
        var writer = new SnapshotWriter();
        lock (_lock)
        {
            AssertInvariants();
            writer.WriteUInt32(SnapshotMagic);
            writer.WriteUInt16(SnapshotVersion);
            writer.WriteUInt32(_device.DeviceId);
            writer.WriteUInt64(_offeredFeatures);
            writer.WriteUInt32((uint)_queues.Length);
            writer.WriteUInt32((uint)_configSize);
            writer.WriteByte((byte)Volatile.Read(ref _status));
            writer.WriteUInt32(_deviceFeatureSelect);
            writer.WriteUInt32(_driverFeatureSelect);
            writer.WriteUInt64(_driverFeatures);
            writer.WriteUInt64(_negotiatedFeatures);
            writer.WriteUInt32(_queueSelect);
            long generation = Volatile.Read(ref _generationState);
            writer.WriteUInt32((uint)generation);
            writer.WriteBool((generation & GenerationObserved) != 0);
            foreach (QueueRegisters queue in _queues)
            {
                VirtqueueState ring = queue.Enabled ? queue.Queue.SaveState() : default;
                writer.WriteUInt16(queue.MaxSize);
                writer.WriteUInt16(queue.Size);
                writer.WriteUInt64(queue.DescriptorArea);
                writer.WriteUInt64(queue.DriverArea);
                writer.WriteUInt64(queue.DeviceArea);
                writer.WriteBool(queue.Enabled);
                writer.WriteUInt16(ring.NextAvail);
                writer.WriteUInt16(ring.NextUsed);
                writer.WriteBool(ring.AvailWrapCounter);
                writer.WriteBool(ring.UsedWrapCounter);
            }
        }

        return writer.ToArray();
    }

    /// <summary>
    /// Restores a state captured by <see cref="SaveState"/>, validating it like guest input. The
    /// device is reset first; when the snapshot was taken with DRIVER_OK set, the device is
    /// activated again with the restored queues and each enabled queue gets one kick.
    /// </summary>
    /// <param name="snapshot">The bytes <see cref="SaveState"/> returned (untrusted).</param>
    /// <returns><see cref="SnapshotStatus.Ok"/>, or why the snapshot was refused; on refusal the controller is in its power-on state.</returns>
    public SnapshotStatus RestoreState(ReadOnlySpan<byte> snapshot)
    {
        SnapshotStatus status;
        lock (_lock)
        {
            status = RestoreUnsynchronized(snapshot);
            if (status != SnapshotStatus.Ok)
            {
                ResetUnsynchronized();
            }
        }

        AfterControl();
        return status;
    }

    private SnapshotStatus RestoreUnsynchronized(ReadOnlySpan<byte> snapshot)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        var reader = new SnapshotReader(snapshot);
        if (!reader.TryReadUInt32(out uint magic) || magic != SnapshotMagic)
        {
            return SnapshotStatus.Malformed;
        }

        if (!reader.TryReadUInt16(out ushort version) || version != SnapshotVersion)
        {
            return reader.Failed ? SnapshotStatus.Malformed : SnapshotStatus.UnsupportedVersion;
        }

        reader.TryReadUInt32(out uint deviceId);
        reader.TryReadUInt64(out ulong offered);
        reader.TryReadUInt32(out uint queueCount);
        reader.TryReadUInt32(out uint configSize);
        if (reader.Failed)
        {
            return SnapshotStatus.Malformed;
        }

        if (deviceId != _device.DeviceId || offered != _offeredFeatures || queueCount != (uint)_queues.Length || configSize != (uint)_configSize)
        {
            return SnapshotStatus.DeviceMismatch;
        }

        reader.TryReadByte(out byte status);
        reader.TryReadUInt32(out uint deviceFeatureSelect);
        reader.TryReadUInt32(out uint driverFeatureSelect);
        reader.TryReadUInt64(out ulong driverFeatures);
        reader.TryReadUInt64(out ulong negotiated);
        reader.TryReadUInt32(out uint queueSelect);
        reader.TryReadUInt32(out uint generation);
        reader.TryReadBool(out bool generationObserved);
        var saved = new SavedQueue[queueCount];
        for (int i = 0; i < saved.Length; i++)
        {
            reader.TryReadUInt16(out saved[i].MaxSize);
            reader.TryReadUInt16(out saved[i].Size);
            reader.TryReadUInt64(out saved[i].DescriptorArea);
            reader.TryReadUInt64(out saved[i].DriverArea);
            reader.TryReadUInt64(out saved[i].DeviceArea);
            reader.TryReadBool(out saved[i].Enabled);
            reader.TryReadUInt16(out saved[i].NextAvail);
            reader.TryReadUInt16(out saved[i].NextUsed);
            reader.TryReadBool(out saved[i].AvailWrap);
            reader.TryReadBool(out saved[i].UsedWrap);
        }

        if (reader.Failed || !reader.AtEnd)
        {
            return SnapshotStatus.Malformed;
        }

        SnapshotStatus check = ValidateStatus(status, driverFeatures, negotiated);
        if (check != SnapshotStatus.Ok)
        {
            return check;
        }

        for (int i = 0; i < saved.Length; i++)
        {
            if (saved[i].MaxSize != _queues[i].MaxSize)
            {
                return SnapshotStatus.DeviceMismatch;
            }

            if (saved[i].Enabled && (status & (int)DeviceStatus.FeaturesOk) == 0)
            {
                return SnapshotStatus.InvalidState;
            }
        }

        // Validated: apply on top of a clean reset (a quiesce for the device: restoring is not a
        // reset the guest asked for).
        ResetUnsynchronized(forRestore: true);
        _deviceFeatureSelect = deviceFeatureSelect;
        _driverFeatureSelect = driverFeatureSelect;
        _driverFeatures = driverFeatures;
        _negotiatedFeatures = negotiated;
        _queueSelect = queueSelect;

        VirtqueueFeatures ringFeatures = VirtioFeatures.ToQueueFeatures(negotiated);
        VirtqueueFormat format = (negotiated & VirtioFeatures.RingPacked) != 0 ? VirtqueueFormat.Packed : VirtqueueFormat.Split;
        for (int i = 0; i < saved.Length; i++)
        {
            QueueRegisters queue = _queues[i];
            queue.Size = saved[i].Size;
            queue.DescriptorArea = saved[i].DescriptorArea;
            queue.DriverArea = saved[i].DriverArea;
            queue.DeviceArea = saved[i].DeviceArea;
            if (!saved[i].Enabled)
            {
                continue;
            }

            var ring = new VirtqueueState
            {
                Format = format,
                Features = ringFeatures,
                Ready = true,
                Config = queue.Config,
                NextAvail = saved[i].NextAvail,
                NextUsed = saved[i].NextUsed,
                AvailWrapCounter = saved[i].AvailWrap,
                UsedWrapCounter = saved[i].UsedWrap,
            };
            if (queue.Queue.RestoreState(_memory, ring) != VirtqueueStatus.Ok)
            {
                return SnapshotStatus.QueueRestoreFailed;
            }

            queue.Enabled = true;
            queue.KickPending = true;   // the replay after activation makes the device look at the ring
        }

        // Last, with nothing left that can refuse: a reset does not clear the configuration
        // generation, so one written before a queue refused would outlive the refusal.
        Volatile.Write(ref _generationState, generation | (generationObserved ? GenerationObserved : 0));
        Volatile.Write(ref _status, status);
        if ((status & (int)DeviceStatus.DriverOk) != 0)
        {
            ActivateUnsynchronized();
        }

        return SnapshotStatus.Ok;
    }

    private SnapshotStatus ValidateStatus(byte status, ulong driverFeatures, ulong negotiated)
    {
        if ((status & ~(DriverStatusBits | NeedsResetBit)) != 0)
        {
            return SnapshotStatus.InvalidState;
        }

        bool featuresOk = (status & (int)DeviceStatus.FeaturesOk) != 0;
        if ((status & (int)DeviceStatus.DriverOk) != 0 && !featuresOk)
        {
            return SnapshotStatus.InvalidState;
        }

        if (!featuresOk)
        {
            return negotiated == 0 ? SnapshotStatus.Ok : SnapshotStatus.InvalidState;
        }

        const int Prerequisites = (int)(DeviceStatus.Acknowledge | DeviceStatus.Driver);
        if ((status & Prerequisites) != Prerequisites
            || negotiated != driverFeatures
            || (negotiated & ~_offeredFeatures) != 0
            || (negotiated & VirtioFeatures.Version1) == 0)
        {
            return SnapshotStatus.InvalidState;
        }

        // §2.2.2: a device SHOULD NOT refuse a set it accepted before; if it does, this is not our device.
        return AcceptFeaturesContained(negotiated) ? SnapshotStatus.Ok : SnapshotStatus.DeviceMismatch;
    }

    private struct SavedQueue
    {
        public ushort MaxSize;
        public ushort Size;
        public ulong DescriptorArea;
        public ulong DriverArea;
        public ulong DeviceArea;
        public bool Enabled;
        public ushort NextAvail;
        public ushort NextUsed;
        public bool AvailWrap;
        public bool UsedWrap;
    }
}
