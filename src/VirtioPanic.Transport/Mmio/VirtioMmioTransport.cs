using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VirtioPanic.Snapshots;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;
using Regs = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Transport.Mmio;

// Design: the virtio-mmio version 2 transport of one virtio device (virtio 1.2 §4.2 "Virtio Over MMIO"; the
// register table is in VirtioMmioRegisters). The hypervisor routes guest accesses to the window
// (base .. base + RegionSize) to Read/Write with the offset from the base. Status, features and
// queues live in VirtioDeviceController, the interrupt in MmioInterrupts; this class only decodes
// registers (width first, then named offset) and holds no lock of its own. QueueNotify goes
// straight to the controller's lock-free notify path.
//
// Only version 2 (modern) is implemented: the legacy registers (GuestPageSize 0x028, QueueAlign
// 0x03C, QueuePFN 0x040) read as reserved. No shared memory regions exist (SHMLen/SHMBase read
// all ones), and no NOTIFICATION_DATA: QueueNotify carries a queue index only.

/// <summary>
/// The virtio-mmio (version 2) transport: puts an <see cref="IVirtioDevice"/> behind a register
/// window, with its interrupt line driven through <see cref="IInterruptSink.SetIntxLevel"/>.
/// </summary>
/// <remarks>
/// <para>Thread-safe. A QueueNotify write (or <see cref="NotifyQueue"/>) takes no lock and
/// allocates nothing.</para>
/// <para>Guest accesses never throw: invalid ones read zeros or are dropped, and are counted
/// (<see cref="GetInvalidAccessCount"/>); an exception from the device is contained as
/// DEVICE_NEEDS_RESET (<see cref="DeviceFaultCount"/>).</para>
/// </remarks>
public sealed class VirtioMmioTransport
{
    private const string TransportName = "virtio-mmio";
    private const uint SnapshotMagic = 0x494D_4D56;   // "VMMI"
    private const ushort SnapshotVersion = 1;

    private readonly VirtioDeviceController _controller;
    private readonly MmioInterrupts _interrupts;
    private readonly AccessReporter _reporter;
    private readonly uint _vendorId;
    private readonly uint _configSize;

    /// <summary>Creates the transport in its power-on state.</summary>
    /// <param name="device">The virtio device behind the window.</param>
    /// <param name="memory">The guest's memory.</param>
    /// <param name="interrupts">Where the interrupt line's level goes.</param>
    /// <param name="options">Options; defaults when null.</param>
    /// <param name="logger">Debug log of guest mistakes (rate-limited); none when null.</param>
    public VirtioMmioTransport(IVirtioDevice device, GuestMemory memory, IInterruptSink interrupts, VirtioMmioOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(interrupts);
        options ??= new VirtioMmioOptions();

        _reporter = new AccessReporter(logger ?? NullLogger.Instance, TransportName, options);
        _interrupts = new MmioInterrupts(interrupts, _reporter);
        _controller = new VirtioDeviceController(device, memory, _interrupts, options.OfferRingReset);
        _vendorId = options.VendorId;
        _configSize = (uint)_controller.ConfigSize;
        RegionSize = Math.Max(0x200UL, Regs.Config + (((ulong)_configSize + 0xFF) & ~0xFFUL));
    }

    /// <summary>Size of the register window to map at the device's base address (at least 0x200).</summary>
    public ulong RegionSize { get; }

    /// <summary>The virtio device behind the window.</summary>
    public IVirtioDevice Device => _controller.Device;

    /// <summary>The device status as the driver sees it.</summary>
    public DeviceStatus DeviceStatus => _controller.Status;

    /// <summary>The features negotiated at FEATURES_OK (0 before).</summary>
    public ulong NegotiatedFeatures => _controller.NegotiatedFeatures;

    /// <summary>The InterruptStatus register (bit 0 used buffer, bit 1 configuration change).</summary>
    public uint InterruptStatus => _interrupts.Status;

    /// <summary>Whether the interrupt line is asserted.</summary>
    public bool InterruptLevel => _interrupts.Level;

    /// <summary>Total invalid guest accesses counted so far (all kinds).</summary>
    public long InvalidAccessCount => _reporter.Total;

    /// <summary>Kicks dropped: unknown or disabled queue, or a device that was not live.</summary>
    public long DroppedNotificationCount => _controller.DroppedNotifications;

    /// <summary>
    /// Exceptions the device threw from a guest-driven call (a notification, a configuration access,
    /// activation, reset) that the transport contained: each set DEVICE_NEEDS_RESET (with a
    /// configuration-change interrupt once the driver is live) instead of reaching the caller of
    /// <see cref="Read"/>, <see cref="Write"/> or <see cref="NotifyQueue"/>. The first is logged as an error.
    /// </summary>
    public long DeviceFaultCount => _controller.DeviceFaults;

    /// <summary>Invalid guest accesses counted so far of one kind.</summary>
    /// <param name="kind">The kind.</param>
    public long GetInvalidAccessCount(InvalidAccessKind kind) => _reporter.Count(kind);

    /// <summary>Kicks a queue directly, as a QueueNotify write does. Lock-free and allocation-free.</summary>
    /// <param name="queueIndex">The queue.</param>
    /// <returns>True when the kick reached the device.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool NotifyQueue(int queueIndex) => _controller.Notify(queueIndex);

    /// <summary>A guest read from the register window.</summary>
    /// <param name="offset">Offset from the window's base.</param>
    /// <param name="data">Destination; its length is the access width.</param>
    public void Read(ulong offset, Span<byte> data)
    {
        if (offset >= Regs.Config)
        {
            ReadConfig(offset, data);
            return;
        }

        InvalidAccessKind kind = CheckRegisterAccess(offset, data.Length);
        if (kind == InvalidAccessKind.None)
        {
            kind = TryReadRegister((int)offset, out uint value);
            if (kind == InvalidAccessKind.None)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(data, value);
                return;
            }
        }

        data.Clear();
        _reporter.Invalid(kind, AccessRegion.MmioRegisters, offset, data.Length, write: false);
    }

    /// <summary>A guest write to the register window.</summary>
    /// <param name="offset">Offset from the window's base.</param>
    /// <param name="data">The bytes written; the length is the access width.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        // Fast path: the doorbell. Without VIRTIO_F_NOTIFICATION_DATA the value is a queue index.
        if (offset == Regs.QueueNotify && data.Length == 4)
        {
            uint value = BinaryPrimitives.ReadUInt32LittleEndian(data);
            if (value <= ushort.MaxValue)
            {
                _controller.Notify((int)value);
                return;
            }
        }

        WriteSlow(offset, data);
    }

    /// <summary>Resets the device as a Status write of 0 does (host-initiated, e.g. a VM reset).</summary>
    public void Reset()
    {
        _controller.Reset();
        _interrupts.Set(0);
    }

    /// <summary>Captures the whole transport: InterruptStatus and the controller's status, features and queues.</summary>
    /// <remarks>Call with the vCPUs paused and the device's workers quiesced.</remarks>
    public byte[] SaveState()
    {
        var writer = new SnapshotWriter();
        writer.WriteUInt32(SnapshotMagic);
        writer.WriteUInt16(SnapshotVersion);
        writer.WriteByte((byte)_interrupts.Status);
        writer.WriteBlob(_controller.SaveState());
        return writer.ToArray();
    }

    /// <summary>Restores a state captured by <see cref="SaveState"/>, validated like guest input; on refusal the device is in its power-on state.</summary>
    /// <param name="snapshot">The saved bytes (untrusted).</param>
    /// <returns><see cref="SnapshotStatus.Ok"/> or why the snapshot was refused.</returns>
    public SnapshotStatus RestoreState(ReadOnlySpan<byte> snapshot) => _reporter.Restored(Restore(snapshot), Reset);

    private static InvalidAccessKind CheckRegisterAccess(ulong offset, int width)
    {
        // §4.2.2.2: the driver MUST use aligned 32-bit accesses for the control registers.
        if (width != 4)
        {
            return InvalidAccessKind.WrongWidth;
        }

        return (offset & 3) != 0 ? InvalidAccessKind.Misaligned : InvalidAccessKind.None;
    }

    private InvalidAccessKind TryReadRegister(int offset, out uint value)
    {
        value = 0;
        switch (offset)
        {
            case Regs.MagicValue:
                value = Regs.Magic;
                return InvalidAccessKind.None;
            case Regs.Version:
                value = 2;
                return InvalidAccessKind.None;
            case Regs.DeviceId:
                value = _controller.Device.DeviceId;
                return InvalidAccessKind.None;
            case Regs.VendorId:
                value = _vendorId;
                return InvalidAccessKind.None;
            case Regs.DeviceFeatures:
                value = _controller.ReadDeviceFeatures();
                return InvalidAccessKind.None;
            case Regs.QueueSizeMax:
                value = _controller.ReadQueueSizeMax();
                return InvalidAccessKind.None;
            case Regs.QueueReady:
                value = _controller.ReadQueueEnable() ? 1u : 0u;
                return InvalidAccessKind.None;
            case Regs.InterruptStatus:
                value = _interrupts.Status;
                return InvalidAccessKind.None;
            case Regs.Status:
                value = (uint)_controller.Status;
                return InvalidAccessKind.None;
            case Regs.ShmLenLow:
            case Regs.ShmLenHigh:
            case Regs.ShmBaseLow:
            case Regs.ShmBaseHigh:
                value = uint.MaxValue;   // §4.2.2: all ones = no such shared memory region
                return InvalidAccessKind.None;
            case Regs.QueueReset:
                return InvalidAccessKind.None;   // the reset is synchronous: never "in progress"
            case Regs.ConfigGeneration:
                value = _controller.ReadConfigGeneration();
                return InvalidAccessKind.None;
            case Regs.DeviceFeaturesSel:
            case Regs.DriverFeatures:
            case Regs.DriverFeaturesSel:
            case Regs.QueueSel:
            case Regs.QueueSize:
            case Regs.QueueNotify:
            case Regs.InterruptAck:
            case Regs.QueueDescLow:
            case Regs.QueueDescHigh:
            case Regs.QueueDriverLow:
            case Regs.QueueDriverHigh:
            case Regs.QueueDeviceLow:
            case Regs.QueueDeviceHigh:
            case Regs.ShmSel:
                return InvalidAccessKind.WriteOnly;
            default:
                return InvalidAccessKind.Reserved;
        }
    }

    private void WriteSlow(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset >= Regs.Config)
        {
            WriteConfig(offset, data);
            return;
        }

        InvalidAccessKind kind = CheckRegisterAccess(offset, data.Length);
        if (kind == InvalidAccessKind.None)
        {
            kind = WriteRegister((int)offset, BinaryPrimitives.ReadUInt32LittleEndian(data));
        }

        if (kind != InvalidAccessKind.None)
        {
            _reporter.Invalid(kind, AccessRegion.MmioRegisters, offset, data.Length, write: true);
        }
    }

    private InvalidAccessKind WriteRegister(int offset, uint value)
    {
        switch (offset)
        {
            case Regs.DeviceFeaturesSel:
                _controller.WriteDeviceFeatureSelect(value);
                break;
            case Regs.DriverFeatures:
                _reporter.RegisterWrite("DriverFeatures", value, _controller.WriteDriverFeatures(value));
                break;
            case Regs.DriverFeaturesSel:
                _controller.WriteDriverFeatureSelect(value);
                break;
            case Regs.QueueSel:
                _controller.WriteQueueSelect(value);
                break;
            case Regs.QueueSize:
                _reporter.RegisterWrite("QueueSize", value, value > ushort.MaxValue ? RegisterWriteResult.InvalidValue : _controller.WriteQueueSize((ushort)value));
                break;
            case Regs.QueueReady:
                WriteQueueReady(value);
                break;
            case Regs.QueueNotify:
                // Reached only with a value above 16 bits: notification data was not negotiated.
                _reporter.RegisterWrite("QueueNotify", value, RegisterWriteResult.FeatureNotNegotiated);
                break;
            case Regs.InterruptAck:
                // §4.2.2.2: the driver acknowledges only defined bits; undefined ones are reported.
                _interrupts.Acknowledge(value & (Regs.InterruptUsedBuffer | Regs.InterruptConfigChange));
                if ((value & ~(Regs.InterruptUsedBuffer | Regs.InterruptConfigChange)) != 0)
                {
                    _reporter.RegisterWrite("InterruptACK", value, RegisterWriteResult.InvalidValue);
                }

                break;
            case Regs.Status:
                WriteStatus(value);
                break;
            case Regs.QueueDescLow:
            case Regs.QueueDescHigh:
                _reporter.RegisterWrite("QueueDesc", value, _controller.WriteQueueAddress(VirtqueueArea.Descriptor, offset == Regs.QueueDescHigh, value));
                break;
            case Regs.QueueDriverLow:
            case Regs.QueueDriverHigh:
                _reporter.RegisterWrite("QueueDriver", value, _controller.WriteQueueAddress(VirtqueueArea.Driver, offset == Regs.QueueDriverHigh, value));
                break;
            case Regs.QueueDeviceLow:
            case Regs.QueueDeviceHigh:
                _reporter.RegisterWrite("QueueDevice", value, _controller.WriteQueueAddress(VirtqueueArea.Device, offset == Regs.QueueDeviceHigh, value));
                break;
            case Regs.ShmSel:
                break;   // any region reads as absent
            case Regs.QueueReset:
                _reporter.RegisterWrite("QueueReset", value, _controller.WriteQueueReset(value));
                break;
            case Regs.MagicValue:
            case Regs.Version:
            case Regs.DeviceId:
            case Regs.VendorId:
            case Regs.DeviceFeatures:
            case Regs.QueueSizeMax:
            case Regs.InterruptStatus:
            case Regs.ShmLenLow:
            case Regs.ShmLenHigh:
            case Regs.ShmBaseLow:
            case Regs.ShmBaseHigh:
            case Regs.ConfigGeneration:
                return InvalidAccessKind.ReadOnly;
            default:
                return InvalidAccessKind.Reserved;
        }

        return InvalidAccessKind.None;
    }

    private void WriteStatus(uint value)
    {
        if (value > byte.MaxValue)
        {
            _reporter.RegisterWrite("Status", value, RegisterWriteResult.InvalidValue);
            return;
        }

        DeviceStatusWriteResult result = _controller.WriteStatus((byte)value);
        if (result == DeviceStatusWriteResult.Reset)
        {
            // §4.2.2.1: on reset the device MUST clear InterruptStatus (and every QueueReady, done by the controller).
            _interrupts.Set(0);
        }

        _reporter.StatusWrite((byte)value, result);
    }

    private void WriteQueueReady(uint value)
    {
        switch (value)
        {
            case 1:
                RegisterWriteResult result = _controller.EnableQueue(out VirtqueueStatus queueStatus);
                if (!_reporter.RegisterWrite("QueueReady", value, result) && result == RegisterWriteResult.QueueConfigRejected)
                {
                    _reporter.QueueRejected((int)_controller.QueueSelect, queueStatus);
                }

                break;
            case 0:
                // Linux's virtio_mmio writes 0 to stop a queue and reads QueueReady back.
                _reporter.RegisterWrite("QueueReady", value, _controller.DisableQueue());
                break;
            default:
                _reporter.RegisterWrite("QueueReady", value, RegisterWriteResult.InvalidValue);
                break;
        }
    }

    private void ReadConfig(ulong offset, Span<byte> data)
    {
        InvalidAccessKind kind = CheckConfigAccess(offset, data.Length);
        if (kind == InvalidAccessKind.None && _controller.TryReadDeviceConfig((uint)(offset - Regs.Config), data))
        {
            return;
        }

        data.Clear();
        _reporter.Invalid(kind == InvalidAccessKind.None ? InvalidAccessKind.OutOfRange : kind, AccessRegion.DeviceConfig, offset, data.Length, write: false);
    }

    private void WriteConfig(ulong offset, ReadOnlySpan<byte> data)
    {
        InvalidAccessKind kind = CheckConfigAccess(offset, data.Length);
        if (kind == InvalidAccessKind.None && _controller.TryWriteDeviceConfig((uint)(offset - Regs.Config), data))
        {
            return;
        }

        _reporter.Invalid(kind == InvalidAccessKind.None ? InvalidAccessKind.OutOfRange : kind, AccessRegion.DeviceConfig, offset, data.Length, write: true);
    }

    // Device configuration: naturally aligned field-width accesses (§4.2.2.2), inside the space.
    private InvalidAccessKind CheckConfigAccess(ulong offset, int width)
    {
        if (width is not (1 or 2 or 4 or 8))
        {
            return InvalidAccessKind.WrongWidth;
        }

        if ((offset & (ulong)(width - 1)) != 0)
        {
            return InvalidAccessKind.Misaligned;
        }

        ulong relative = offset - Regs.Config;
        return relative < _configSize && relative + (ulong)width <= _configSize ? InvalidAccessKind.None : InvalidAccessKind.OutOfRange;
    }

    private SnapshotStatus Restore(ReadOnlySpan<byte> snapshot)
    {
        var reader = new SnapshotReader(snapshot);
        SnapshotStatus header = TransportSnapshot.ReadHeader(ref reader, SnapshotMagic, SnapshotVersion);
        if (header != SnapshotStatus.Ok)
        {
            return header;
        }

        byte interruptStatus = reader.ReadByte();
        ReadOnlySpan<byte> controller = reader.ReadBlob();
        if (reader.Failed || !reader.AtEnd)
        {
            return SnapshotStatus.Malformed;
        }

        if ((interruptStatus & ~(Regs.InterruptUsedBuffer | Regs.InterruptConfigChange)) != 0)
        {
            return SnapshotStatus.InvalidState;
        }

        // InterruptStatus first: the re-activated device may signal right away.
        _interrupts.Set(interruptStatus);
        return _controller.RestoreState(controller);
    }
}
