using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;
using Regs = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.Transport.Pci;

// The virtio BAR: common configuration, ISR, device configuration and notify regions
// (layout in VirtioPciLayout). Dispatch is width first, then named offset (style.md §5.18);
// the layout table of the common configuration is in VirtioPciCommonConfigRegisters.
public sealed partial class VirtioPciFunction
{
    private void ReadVirtioBar(ulong offset, Span<byte> data)
    {
        if (offset < VirtioPciLayout.CommonConfigLength)
        {
            ReadCommonConfig((uint)offset, data);
        }
        else if (offset - VirtioPciLayout.IsrOffset < VirtioPciLayout.IsrLength)
        {
            if (data.Length == 1)
            {
                // §4.1.4.5.1: reading the ISR returns and clears it (and so deasserts INTx).
                data[0] = _router.ReadAndClearIsr();
            }
            else
            {
                InvalidVirtioBarRead(InvalidAccessKind.WrongWidth, AccessRegion.Isr, offset, data);
            }
        }
        else if (offset - VirtioPciLayout.DeviceConfigOffset < _layout.DeviceConfigLength)
        {
            InvalidAccessKind kind = CheckDeviceConfigAccess(offset - VirtioPciLayout.DeviceConfigOffset, data.Length);
            if (kind != InvalidAccessKind.None || !_controller.TryReadDeviceConfig((uint)(offset - VirtioPciLayout.DeviceConfigOffset), data))
            {
                InvalidVirtioBarRead(kind == InvalidAccessKind.None ? InvalidAccessKind.OutOfRange : kind, AccessRegion.DeviceConfig, offset, data);
            }
        }
        else if (offset - VirtioPciLayout.NotifyOffset < _layout.NotifyLength)
        {
            InvalidVirtioBarRead(InvalidAccessKind.WriteOnly, AccessRegion.Notify, offset, data);
        }
        else
        {
            InvalidVirtioBarRead(offset < _layout.VirtioBarSize ? InvalidAccessKind.Reserved : InvalidAccessKind.OutOfRange, AccessRegion.Bar, offset, data);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteVirtioBar(ulong offset, ReadOnlySpan<byte> data)
    {
        // Fast path first: a 16-bit doorbell write at queue q's address carrying q kicks queue q
        // (§4.1.5.2: without VIRTIO_F_NOTIFICATION_DATA the driver writes the 16-bit queue index).
        ulong notify = offset - VirtioPciLayout.NotifyOffset;
        if (notify < _layout.NotifyLength && data.Length == 2 && (notify & (VirtioPciLayout.NotifyOffMultiplier - 1)) == 0)
        {
            int queue = (int)(notify / VirtioPciLayout.NotifyOffMultiplier);
            if (BinaryPrimitives.ReadUInt16LittleEndian(data) == queue)
            {
                _controller.Notify(queue);
                return;
            }
        }

        WriteVirtioBarSlow(offset, data);
    }

    private void WriteVirtioBarSlow(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset < VirtioPciLayout.CommonConfigLength)
        {
            WriteCommonConfig((uint)offset, data);
        }
        else if (offset - VirtioPciLayout.IsrOffset < VirtioPciLayout.IsrLength)
        {
            _reporter.Invalid(data.Length == 1 ? InvalidAccessKind.ReadOnly : InvalidAccessKind.WrongWidth, AccessRegion.Isr, offset, data.Length, write: true);
        }
        else if (offset - VirtioPciLayout.DeviceConfigOffset < _layout.DeviceConfigLength)
        {
            InvalidAccessKind kind = CheckDeviceConfigAccess(offset - VirtioPciLayout.DeviceConfigOffset, data.Length);
            if (kind != InvalidAccessKind.None || !_controller.TryWriteDeviceConfig((uint)(offset - VirtioPciLayout.DeviceConfigOffset), data))
            {
                _reporter.Invalid(kind == InvalidAccessKind.None ? InvalidAccessKind.OutOfRange : kind, AccessRegion.DeviceConfig, offset, data.Length, write: true);
            }
        }
        else if (offset - VirtioPciLayout.NotifyOffset < _layout.NotifyLength)
        {
            // 32-bit notifications need VIRTIO_F_NOTIFICATION_DATA, which is not offered; a
            // 16-bit write at a queue's address that names another queue is refused.
            ulong notify = offset - VirtioPciLayout.NotifyOffset;
            InvalidAccessKind kind = data.Length != 2
                ? InvalidAccessKind.WrongWidth
                : (notify & (VirtioPciLayout.NotifyOffMultiplier - 1)) != 0 ? InvalidAccessKind.Misaligned : InvalidAccessKind.Rejected;
            _reporter.Invalid(kind, AccessRegion.Notify, notify, data.Length, write: true);
        }
        else
        {
            _reporter.Invalid(offset < _layout.VirtioBarSize ? InvalidAccessKind.Reserved : InvalidAccessKind.OutOfRange, AccessRegion.Bar, offset, data.Length, write: true);
        }
    }

    // Device configuration fields are naturally aligned, 1 to 8 bytes wide (§4.1.3.1).
    private static InvalidAccessKind CheckDeviceConfigAccess(ulong offset, int width)
    {
        if (width is not (1 or 2 or 4 or 8))
        {
            return InvalidAccessKind.WrongWidth;
        }

        return (offset & (ulong)(width - 1)) != 0 ? InvalidAccessKind.Misaligned : InvalidAccessKind.None;
    }

    private void InvalidVirtioBarRead(InvalidAccessKind kind, AccessRegion region, ulong offset, Span<byte> data)
    {
        data.Clear();
        _reporter.Invalid(kind, region, offset, data.Length, write: false);
    }

    private void ReadCommonConfig(uint offset, Span<byte> data)
    {
        switch (data.Length)
        {
            case 1:
                switch (offset)
                {
                    case Regs.DeviceStatus:
                        data[0] = (byte)_controller.Status;
                        return;
                    case Regs.ConfigGeneration:
                        // 8 bits on PCI; the controller moves it at most once between two reads.
                        data[0] = (byte)_controller.ReadConfigGeneration();
                        return;
                }

                break;
            case 2:
                if (TryReadCommon16(offset, out ushort value16))
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(data, value16);
                    return;
                }

                break;
            case 4:
                if (TryReadCommon32(offset, out uint value32))
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(data, value32);
                    return;
                }

                break;
        }

        data.Clear();
        _reporter.Invalid(ClassifyCommon(offset, data.Length), AccessRegion.CommonConfig, offset, data.Length, write: false);
    }

    private bool TryReadCommon16(uint offset, out ushort value)
    {
        int queue;
        switch (offset)
        {
            case Regs.ConfigMsixVector:
                value = _router.ConfigVector;
                return true;
            case Regs.NumQueues:
                value = (ushort)_controller.QueueCount;
                return true;
            case Regs.QueueSelect:
                value = (ushort)_controller.QueueSelect;
                return true;
            case Regs.QueueSize:
                value = _controller.ReadQueueSize();
                return true;
            case Regs.QueueMsixVector:
                queue = _controller.SelectedQueueIndex;
                value = queue < 0 ? (ushort)0 : _router.GetQueueVector(queue);
                return true;
            case Regs.QueueEnable:
                value = _controller.ReadQueueEnable() ? (ushort)1 : (ushort)0;
                return true;
            case Regs.QueueNotifyOff:
                queue = _controller.SelectedQueueIndex;
                value = queue < 0 ? (ushort)0 : (ushort)queue;
                return true;
            case Regs.QueueNotifyData:
            case Regs.QueueReset:          // the reset is synchronous: never "in progress"
            case Regs.AdminQueueIndex:
            case Regs.AdminQueueNum:
                value = 0;
                return true;
            default:
                value = 0;
                return false;
        }
    }

    private bool TryReadCommon32(uint offset, out uint value)
    {
        switch (offset)
        {
            case Regs.DeviceFeatureSelect:
                value = _controller.DeviceFeatureSelect;
                return true;
            case Regs.DeviceFeature:
                value = _controller.ReadDeviceFeatures();
                return true;
            case Regs.DriverFeatureSelect:
                value = _controller.DriverFeatureSelect;
                return true;
            case Regs.DriverFeature:
                value = _controller.ReadDriverFeatures();
                return true;
            case Regs.QueueDescLow:
                value = (uint)_controller.ReadQueueAddress(VirtqueueArea.Descriptor);
                return true;
            case Regs.QueueDescHigh:
                value = (uint)(_controller.ReadQueueAddress(VirtqueueArea.Descriptor) >> 32);
                return true;
            case Regs.QueueDriverLow:
                value = (uint)_controller.ReadQueueAddress(VirtqueueArea.Driver);
                return true;
            case Regs.QueueDriverHigh:
                value = (uint)(_controller.ReadQueueAddress(VirtqueueArea.Driver) >> 32);
                return true;
            case Regs.QueueDeviceLow:
                value = (uint)_controller.ReadQueueAddress(VirtqueueArea.Device);
                return true;
            case Regs.QueueDeviceHigh:
                value = (uint)(_controller.ReadQueueAddress(VirtqueueArea.Device) >> 32);
                return true;
            default:
                value = 0;
                return false;
        }
    }

    private void WriteCommonConfig(uint offset, ReadOnlySpan<byte> data)
    {
        switch (data.Length)
        {
            case 1:
                switch (offset)
                {
                    case Regs.DeviceStatus:
                        WriteDeviceStatus(data[0]);
                        return;
                    case Regs.ConfigGeneration:
                        _reporter.Invalid(InvalidAccessKind.ReadOnly, AccessRegion.CommonConfig, offset, 1, write: true);
                        return;
                }

                break;
            case 2:
                if (TryWriteCommon16(offset, BinaryPrimitives.ReadUInt16LittleEndian(data)))
                {
                    return;
                }

                break;
            case 4:
                if (TryWriteCommon32(offset, BinaryPrimitives.ReadUInt32LittleEndian(data)))
                {
                    return;
                }

                break;
        }

        _reporter.Invalid(ClassifyCommon(offset, data.Length), AccessRegion.CommonConfig, offset, data.Length, write: true);
    }

    private bool TryWriteCommon16(uint offset, ushort value)
    {
        switch (offset)
        {
            case Regs.ConfigMsixVector:
                _router.SetConfigVector(value);
                return true;
            case Regs.QueueSelect:
                _controller.WriteQueueSelect(value);
                return true;
            case Regs.QueueSize:
                _reporter.RegisterWrite("queue_size", value, _controller.WriteQueueSize(value));
                return true;
            case Regs.QueueMsixVector:
                int queue = _controller.SelectedQueueIndex;
                if (queue < 0)
                {
                    _reporter.RegisterWrite("queue_msix_vector", value, RegisterWriteResult.NoSuchQueue);
                }
                else
                {
                    _router.SetQueueVector(queue, value);
                }

                return true;
            case Regs.QueueEnable:
                WriteQueueEnable(value);
                return true;
            case Regs.QueueReset:
                _reporter.RegisterWrite("queue_reset", value, _controller.WriteQueueReset(value));
                return true;
            case Regs.NumQueues:
            case Regs.QueueNotifyOff:
            case Regs.QueueNotifyData:
            case Regs.AdminQueueIndex:
            case Regs.AdminQueueNum:
                _reporter.Invalid(InvalidAccessKind.ReadOnly, AccessRegion.CommonConfig, offset, 2, write: true);
                return true;
            default:
                return false;
        }
    }

    private bool TryWriteCommon32(uint offset, uint value)
    {
        switch (offset)
        {
            case Regs.DeviceFeatureSelect:
                _controller.WriteDeviceFeatureSelect(value);
                return true;
            case Regs.DriverFeatureSelect:
                _controller.WriteDriverFeatureSelect(value);
                return true;
            case Regs.DriverFeature:
                _reporter.RegisterWrite("driver_feature", value, _controller.WriteDriverFeatures(value));
                return true;
            case Regs.QueueDescLow:
            case Regs.QueueDescHigh:
                _reporter.RegisterWrite("queue_desc", value, _controller.WriteQueueAddress(VirtqueueArea.Descriptor, offset == Regs.QueueDescHigh, value));
                return true;
            case Regs.QueueDriverLow:
            case Regs.QueueDriverHigh:
                _reporter.RegisterWrite("queue_driver", value, _controller.WriteQueueAddress(VirtqueueArea.Driver, offset == Regs.QueueDriverHigh, value));
                return true;
            case Regs.QueueDeviceLow:
            case Regs.QueueDeviceHigh:
                _reporter.RegisterWrite("queue_device", value, _controller.WriteQueueAddress(VirtqueueArea.Device, offset == Regs.QueueDeviceHigh, value));
                return true;
            case Regs.DeviceFeature:
                _reporter.Invalid(InvalidAccessKind.ReadOnly, AccessRegion.CommonConfig, offset, 4, write: true);
                return true;
            default:
                return false;
        }
    }

    private void WriteDeviceStatus(byte value)
    {
        DeviceStatusWriteResult result = _controller.WriteStatus(value);
        if (result == DeviceStatusWriteResult.Reset)
        {
            // §4.1.5.1.2.1: reset unmaps every vector; the ISR goes with the rest of the state.
            _router.ResetVirtio();
        }

        _reporter.StatusWrite(value, result);
    }

    private void WriteQueueEnable(ushort value)
    {
        // The driver only ever writes 1 (§4.1.4.3.2); anything else is refused and changes nothing.
        if (value != 1)
        {
            _reporter.RegisterWrite("queue_enable", value, RegisterWriteResult.InvalidValue);
            return;
        }

        RegisterWriteResult result = _controller.EnableQueue(out VirtqueueStatus queueStatus);
        if (!_reporter.RegisterWrite("queue_enable", value, result) && result == RegisterWriteResult.QueueConfigRejected)
        {
            _reporter.QueueRejected((int)_controller.QueueSelect, queueStatus);
        }
    }

    // Why an access matched no register: a field's width and alignment are fixed (§4.1.3.1).
    private static InvalidAccessKind ClassifyCommon(uint offset, int width)
    {
        if (width is not (1 or 2 or 4))
        {
            return InvalidAccessKind.WrongWidth;
        }

        if ((offset & (uint)(width - 1)) != 0)
        {
            return InvalidAccessKind.Misaligned;
        }

        if (offset + (uint)width > Regs.Size)
        {
            return InvalidAccessKind.Reserved;
        }

        // A known field starts here (or the access falls inside one) at another width.
        return InvalidAccessKind.WrongWidth;
    }
}
