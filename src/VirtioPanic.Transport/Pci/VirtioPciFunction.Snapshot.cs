using System.Buffers.Binary;
using VirtioPanic.Snapshots;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport.Pci;

// Snapshot format, version 1 (little-endian):
//
//   u32 magic "VPCI"  u16 version
//   u8[256] configuration space (writable bytes are restored; read-only ones must match)
//   u64 BAR0 address  u64 BAR2 address
//   MSI-X: u16 vector count, u8 flags (enable, function mask, bus master), u32[4 * count] table, u64[] PBA
//   u8 ISR  u16 config_msix_vector  u16 queue count  u16[queue count] queue_msix_vector
//   u32 length + controller snapshot (VirtioDeviceController format)
//
// The whole snapshot is parsed and validated before anything is applied; the controller
// validates its own part (including the rings against guest memory).
public sealed partial class VirtioPciFunction
{
    private const uint SnapshotMagic = 0x4943_5056;   // "VPCI"
    private const ushort SnapshotVersion = 1;

    /// <summary>
    /// Captures the whole function: configuration space, BARs, MSI-X table and pending bits, ISR,
    /// vector mappings, and the controller's status, features and queues. The device's own state
    /// is saved by the device.
    /// </summary>
    /// <remarks>Call with the vCPUs paused and the device's workers quiesced.</remarks>
    public byte[] SaveState()
    {
        var writer = new SnapshotWriter();
        writer.WriteUInt32(SnapshotMagic);
        writer.WriteUInt16(SnapshotVersion);
        lock (_lock)
        {
            writer.WriteBytes(_config);
            writer.WriteUInt64(_virtioBar.Address);
            writer.WriteUInt64(_msixBar.Address);
        }

        _msix.Save(writer);
        writer.WriteByte((byte)_router.Isr);
        writer.WriteUInt16(_router.ConfigVector);
        writer.WriteUInt16((ushort)_controller.QueueCount);
        for (int i = 0; i < _controller.QueueCount; i++)
        {
            writer.WriteUInt16(_router.GetQueueVector(i));
        }

        writer.WriteBlob(_controller.SaveState());
        return writer.ToArray();
    }

    /// <summary>
    /// Restores a state captured by <see cref="SaveState"/>, validated like guest input. Raises
    /// <see cref="BarChanged"/> for the restored BAR mappings. On refusal the function is left in
    /// its power-on state.
    /// </summary>
    /// <param name="snapshot">The saved bytes (untrusted).</param>
    /// <returns><see cref="SnapshotStatus.Ok"/> or why the snapshot was refused.</returns>
    public SnapshotStatus RestoreState(ReadOnlySpan<byte> snapshot) => _reporter.Restored(Restore(snapshot), Reset);

    private SnapshotStatus Restore(ReadOnlySpan<byte> snapshot)
    {
        var reader = new SnapshotReader(snapshot);
        SnapshotStatus header = TransportSnapshot.ReadHeader(ref reader, SnapshotMagic, SnapshotVersion);
        if (header != SnapshotStatus.Ok)
        {
            return header;
        }

        byte[] config = reader.ReadBytes(ConfigSpaceSize).ToArray();
        ulong virtioAddress = reader.ReadUInt64();
        ulong msixAddress = reader.ReadUInt64();
        if (reader.Failed)
        {
            return SnapshotStatus.Malformed;
        }

        SnapshotStatus status = _msix.Parse(ref reader, out MsixSavedState msix);
        if (status != SnapshotStatus.Ok)
        {
            return status;
        }

        byte isr = reader.ReadByte();
        ushort configVector = reader.ReadUInt16();
        ushort queueCount = reader.ReadUInt16();
        if (reader.Failed)
        {
            return SnapshotStatus.Malformed;
        }

        if (queueCount != _controller.QueueCount)
        {
            return SnapshotStatus.DeviceMismatch;
        }

        var queueVectors = new ushort[queueCount];
        for (int i = 0; i < queueVectors.Length; i++)
        {
            queueVectors[i] = reader.ReadUInt16();
        }

        ReadOnlySpan<byte> controller = reader.ReadBlob();
        if (reader.Failed || !reader.AtEnd)
        {
            return SnapshotStatus.Malformed;
        }

        status = ValidateConfigSpace(config);
        if (status != SnapshotStatus.Ok)
        {
            return status;
        }

        if (!_virtioBar.IsAligned(virtioAddress) || !_msixBar.IsAligned(msixAddress) || (isr & ~3) != 0 || !_router.IsValidVector(configVector))
        {
            return SnapshotStatus.InvalidState;
        }

        foreach (ushort vector in queueVectors)
        {
            if (!_router.IsValidVector(vector))
            {
                return SnapshotStatus.InvalidState;
            }
        }

        // Transport state first, so that interrupts the re-activated device raises right away
        // (the post-restore kick replay) are routed with the restored vectors and MSI-X state.
        ushort command;
        lock (_lock)
        {
            for (int i = 0; i < ConfigSpaceSize; i++)
            {
                _config[i] = (byte)((_template[i] & ~_writeMask[i]) | (config[i] & _writeMask[i]));
            }

            command = BinaryPrimitives.ReadUInt16LittleEndian(_config.AsSpan(PciConfigRegisters.Command));
            _virtioBar.Set(virtioAddress);
            _msixBar.Set(msixAddress);
            _memoryEnabled = (command & PciConfigRegisters.CommandMemorySpace) != 0;
        }

        _msix.Apply(msix);
        _router.Restore(isr, configVector, queueVectors);
        _router.SetIntxDisabled((command & PciConfigRegisters.CommandInterruptDisable) != 0);

        // The controller validates and applies its part; on refusal the caller resets everything.
        status = _controller.RestoreState(controller);
        if (status != SnapshotStatus.Ok)
        {
            return status;
        }

        PublishBarChanges();
        return SnapshotStatus.Ok;
    }

    // Read-only bytes identify the function (IDs, class, capabilities): they must match ours.
    // Bytes with live values (Status bit 3, the BARs, MSI-X message control) are checked elsewhere.
    private SnapshotStatus ValidateConfigSpace(byte[] saved)
    {
        for (int i = 0; i < ConfigSpaceSize; i++)
        {
            bool live = i == PciConfigRegisters.Status
                || (i >= PciConfigRegisters.Bar0 && i < PciConfigRegisters.Bar0 + 16)
                || i == _layout.MsixCapability + MsixRegisters.MessageControl
                || i == _layout.MsixCapability + MsixRegisters.MessageControl + 1;
            if (!live && (saved[i] & ~_writeMask[i]) != (_template[i] & ~_writeMask[i]))
            {
                return SnapshotStatus.DeviceMismatch;
            }
        }

        return SnapshotStatus.Ok;
    }
}
