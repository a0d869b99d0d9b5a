using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Queue;
using Cap = VirtioPanic.Transport.Pci.VirtioPciCapabilityRegisters;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;

namespace VirtioPanic.GuestDriver.Virtio;

// Linux drivers/virtio/virtio_pci_modern{,_dev}.c and virtio_pci_common.c, reduced:
//   probe      vendor 0x1AF4, device 0x1041..0x107F (modern only); walk the capability list from
//              the capabilities pointer; take the first vendor capability of each cfg_type whose
//              BAR is implemented and which lies inside it (virtio_pci_find_capability); the
//              common region must be >= 56 bytes, notify >= 2, ISR >= 1 (vp_modern_probe)
//   registers  8-bit fields with 8-bit accesses, 16 with 16, 32 and 64 (as two halves) with 32
//   queues     select, read queue_size (0 = absent), write the size, the three areas and the
//              MSI-X vector (read back: NO_VECTOR means the mapping failed), read
//              queue_notify_off, write queue_enable = 1
//   notify     16-bit write of the queue index at notify base + queue_notify_off * multiplier
//   interrupts vp_find_vqs: MSI-X with a vector per queue, else MSI-X with one shared queue
//              vector, else INTx through the ISR register (read clears, deasserts the line)
internal sealed class PciModernTransport : GuestTransport
{
    private readonly IGuestMachine _machine;
    private readonly PciConfigAccess _config;
    private readonly PciFunctionInfo _function;
    private readonly ulong _common;
    private readonly ulong _notifyBase;
    private readonly uint _notifyMultiplier;
    private readonly ulong _isr;
    private readonly ulong _device;
    private readonly ulong _deviceLength;
    private readonly int _msixCapability = -1;
    private readonly List<(int Vector, Func<bool> Handler)> _registered = [];
    private readonly List<int> _cpuVectors = [];
    private readonly Dictionary<int, ulong> _notifyAddress = [];
    private VirtioInterruptMode _mode;

    private PciModernTransport(IGuestMachine machine, PciConfigAccess config, PciFunctionInfo function, ulong common, ulong notifyBase, uint multiplier, ulong isr, ulong device, ulong deviceLength, int msix)
    {
        _machine = machine;
        _config = config;
        _function = function;
        _common = common;
        _notifyBase = notifyBase;
        _notifyMultiplier = multiplier;
        _isr = isr;
        _device = device;
        _deviceLength = deviceLength;
        _msixCapability = msix;
    }

    internal override VirtioTransportKind Kind => VirtioTransportKind.Pci;

    internal override string Location => _function.ToString();

    internal override uint DeviceId => (uint)(_function.DeviceId - 0x1040);

    internal override ulong StatusRegister => Common.DeviceStatus;

    internal override ulong FeatureRegister => Common.DeviceFeature;

    internal int MsixTableSize => _msixCapability < 0 ? 0 : (_config.Read16(_function.Device, _msixCapability + MsixRegisters.MessageControl) & MsixRegisters.TableSizeMask) + 1;

    internal static PciModernTransport? TryProbe(IGuestMachine machine, PciConfigAccess config, PciFunctionInfo function)
    {
        if (function.VendorId != 0x1AF4 || function.DeviceId is < 0x1041 or > 0x107F)
        {
            return null;
        }

        int device = function.Device;
        if ((config.Read16(device, PciConfigRegisters.Status) & PciConfigRegisters.StatusCapabilityList) == 0)
        {
            return null;
        }

        (ulong Address, ulong Length)? common = null, notify = null, isr = null, deviceConfig = null;
        uint multiplier = 0;
        int msix = -1;
        int guard = 48;   // at most 48 dword-aligned capabilities fit in 0x40..0xFF
        for (int at = config.Read8(device, PciConfigRegisters.CapabilitiesPointer) & ~3; at != 0 && guard-- > 0; at = config.Read8(device, at + PciConfigRegisters.CapabilityNext) & ~3)
        {
            byte id = config.Read8(device, at + PciConfigRegisters.CapabilityId);
            if (id == PciConfigRegisters.CapabilityIdMsix)
            {
                msix = msix < 0 ? at : msix;
                continue;
            }

            if (id != PciConfigRegisters.CapabilityIdVendorSpecific)
            {
                continue;
            }

            byte type = config.Read8(device, at + Cap.ConfigType);
            byte bar = config.Read8(device, at + Cap.Bar);
            uint offset = config.Read32(device, at + Cap.Offset);
            uint length = config.Read32(device, at + Cap.Length);
            if (bar > 5 || function.BarSize[bar] == 0 || offset + (ulong)length > function.BarSize[bar])
            {
                continue;   // Linux ignores capabilities whose region is not inside an implemented BAR.
            }

            (ulong, ulong) region = (function.BarAddress[bar] + offset, length);
            switch (type)
            {
                case Cap.TypeCommonConfig when common is null && length >= 56:
                    common = region;
                    break;
                case Cap.TypeNotifyConfig when notify is null && length >= 2:
                    notify = region;
                    multiplier = config.Read32(device, at + Cap.NotifyOffMultiplier);
                    break;
                case Cap.TypeIsrConfig when isr is null && length >= 1:
                    isr = region;
                    break;
                case Cap.TypeDeviceConfig when deviceConfig is null:
                    deviceConfig = region;
                    break;
            }
        }

        if (common is null || notify is null || isr is null)
        {
            return null;
        }

        return new PciModernTransport(machine, config, function, common.Value.Address, notify.Value.Address, multiplier, isr.Value.Address,
            deviceConfig?.Address ?? 0, deviceConfig?.Length ?? 0, msix);
    }

    internal override byte ReadStatus() => Read8(_common + Common.DeviceStatus);

    internal override void WriteStatus(byte status) => Write8(_common + Common.DeviceStatus, status);

    internal override ulong ReadDeviceFeatures()
    {
        Write32(_common + Common.DeviceFeatureSelect, 0);
        ulong low = Read32(_common + Common.DeviceFeature);
        Write32(_common + Common.DeviceFeatureSelect, 1);
        return low | ((ulong)Read32(_common + Common.DeviceFeature) << 32);
    }

    internal override void WriteDriverFeatures(ulong features)
    {
        Write32(_common + Common.DriverFeatureSelect, 0);
        Write32(_common + Common.DriverFeature, (uint)features);
        Write32(_common + Common.DriverFeatureSelect, 1);
        Write32(_common + Common.DriverFeature, (uint)(features >> 32));
    }

    internal override ushort ReadQueueMaxSize(int queue)
    {
        if (queue >= Read16(_common + Common.NumQueues))
        {
            return 0;
        }

        Write16(_common + Common.QueueSelect, (ushort)queue);
        return Read16(_common + Common.QueueSize);
    }

    internal override bool IsQueueEnabled(int queue)
    {
        Write16(_common + Common.QueueSelect, (ushort)queue);
        return Read16(_common + Common.QueueEnable) != 0;
    }

    internal override bool ActivateQueue(int queue, VirtqueueConfig config, ushort vector)
    {
        Write16(_common + Common.QueueSelect, (ushort)queue);
        Write16(_common + Common.QueueSize, config.Size);
        Write64(_common + Common.QueueDescLow, config.DescriptorArea);
        Write64(_common + Common.QueueDriverLow, config.DriverArea);
        Write64(_common + Common.QueueDeviceLow, config.DeviceArea);
        if (_mode is VirtioInterruptMode.MsixPerQueue or VirtioInterruptMode.MsixShared)
        {
            Write16(_common + Common.QueueMsixVector, vector);
            if (Read16(_common + Common.QueueMsixVector) != vector)
            {
                return false;
            }
        }

        ushort notifyOff = Read16(_common + Common.QueueNotifyOff);
        _notifyAddress[queue] = _notifyBase + ((ulong)notifyOff * _notifyMultiplier);
        Write16(_common + Common.QueueEnable, 1);
        return true;
    }

    internal override void Notify(int queue)
    {
        if (!_notifyAddress.TryGetValue(queue, out ulong address))
        {
            // A queue the driver never set up: compute its doorbell the way setup would have.
            Write16(_common + Common.QueueSelect, (ushort)queue);
            address = _notifyBase + ((ulong)Read16(_common + Common.QueueNotifyOff) * _notifyMultiplier);
        }

        Write16(address, (ushort)queue);
    }

    internal override uint ReadConfigGeneration() => Read8(_common + Common.ConfigGeneration);

    internal override void ReadConfigRaw(uint offset, Span<byte> data)
    {
        if (offset + (ulong)data.Length > _deviceLength)
        {
            data.Clear();
            return;
        }

        _machine.Mmio.TryRead(_device + offset, data);
    }

    internal override void WriteConfigRaw(uint offset, ReadOnlySpan<byte> data)
    {
        if (offset + (ulong)data.Length <= _deviceLength)
        {
            _machine.Mmio.TryWrite(_device + offset, data);
        }
    }

    internal override VirtioInterruptMode SetUpInterrupts(GuestCpu cpu, int queueCount, VirtioInterruptMode preference, Func<int, bool> onQueue, Func<bool> onAllQueues, Func<bool> onConfig)
    {
        TearDownInterrupts(cpu);
        int available = MsixTableSize;
        if (preference is VirtioInterruptMode.Auto or VirtioInterruptMode.MsixPerQueue && available >= queueCount + 1 && TryMsix(cpu, queueCount + 1, VirtioInterruptMode.MsixPerQueue, onConfig, i => onQueue(i)))
        {
            _mode = VirtioInterruptMode.MsixPerQueue;
            return _mode;
        }

        if (preference is VirtioInterruptMode.Auto or VirtioInterruptMode.MsixShared && available >= 2 && TryMsix(cpu, 2, VirtioInterruptMode.MsixShared, onConfig, _ => onAllQueues()))
        {
            _mode = VirtioInterruptMode.MsixShared;
            return _mode;
        }

        // INTx: MSI-X off, the line routed, the ISR read in the handler (vp_interrupt).
        SetMsixControl(0);
        ushort command = _config.Read16(_function.Device, PciConfigRegisters.Command);
        _config.Write16(_function.Device, PciConfigRegisters.Command, (ushort)(command & ~PciConfigRegisters.CommandInterruptDisable));
        if (_function.InterruptLine >= 0)
        {
            Func<bool> handler = () =>
            {
                byte isr = Read8(_isr);
                if (isr == 0)
                {
                    return false;
                }

                if ((isr & 0x2) != 0)
                {
                    onConfig();
                }

                if ((isr & 0x1) != 0)
                {
                    onAllQueues();
                }

                return true;
            };
            int vector = cpu.RequestLine(_function.InterruptLine, handler);
            _registered.Add((vector, handler));
        }

        _mode = VirtioInterruptMode.Line;
        return _mode;
    }

    internal override ushort QueueVector(int position) => _mode switch
    {
        VirtioInterruptMode.MsixPerQueue => (ushort)(position + 1),
        VirtioInterruptMode.MsixShared => 1,
        _ => NoVector,
    };

    internal override void TearDownInterrupts(GuestCpu cpu)
    {
        foreach ((int vector, Func<bool> handler) in _registered)
        {
            cpu.FreeInterrupt(vector, handler);
        }

        _registered.Clear();
        if (_mode is VirtioInterruptMode.MsixPerQueue or VirtioInterruptMode.MsixShared)
        {
            SetMsixControl(0);
        }

        _mode = VirtioInterruptMode.Auto;
    }

    internal override void RawRead(ulong offset, Span<byte> data) => _machine.Mmio.TryRead(_common + offset, data);

    internal override void RawWrite(ulong offset, ReadOnlySpan<byte> data) => _machine.Mmio.TryWrite(_common + offset, data);

    // pci_alloc_irq_vectors + vp_request_msix_vectors: program `count` table entries with CPU
    // vectors, enable MSI-X with the function masked, map the configuration vector (entry 0) and
    // check it stuck, then unmask.
    private bool TryMsix(GuestCpu cpu, int count, VirtioInterruptMode mode, Func<bool> onConfig, Func<int, bool> onEntry)
    {
        while (_cpuVectors.Count < count)
        {
            _cpuVectors.Add(cpu.AllocateVector());
        }

        int device = _function.Device;
        uint tableRegister = _config.Read32(device, _msixCapability + MsixRegisters.TableOffset);
        ulong table = _function.BarAddress[tableRegister & 7] + (tableRegister & ~7u);
        SetMsixControl((ushort)(MsixRegisters.Enable | MsixRegisters.FunctionMask));
        for (int entry = 0; entry < count; entry++)
        {
            MsiMessage message = _machine.Interrupts.ComposeMsi(_cpuVectors[entry]);
            ulong at = table + ((ulong)entry * MsixRegisters.EntrySize);
            Write32(at + MsixRegisters.EntryAddressLow, (uint)message.Address);
            Write32(at + MsixRegisters.EntryAddressHigh, (uint)(message.Address >> 32));
            Write32(at + MsixRegisters.EntryData, message.Data);
            Write32(at + MsixRegisters.EntryVectorControl, 0);
        }

        Write16(_common + Common.ConfigMsixVector, 0);
        if (Read16(_common + Common.ConfigMsixVector) != 0)
        {
            SetMsixControl(0);
            return false;
        }

        _mode = mode;
        Register(cpu, _cpuVectors[0], onConfig);
        for (int entry = 1; entry < count; entry++)
        {
            int queuePosition = entry - 1;
            Register(cpu, _cpuVectors[entry], () => onEntry(queuePosition));
        }

        SetMsixControl(MsixRegisters.Enable);
        return true;
    }

    private void Register(GuestCpu cpu, int vector, Func<bool> handler)
    {
        cpu.RequestInterrupt(vector, handler);
        _registered.Add((vector, handler));
    }

    private void SetMsixControl(ushort value)
    {
        if (_msixCapability >= 0)
        {
            _config.Write16(_function.Device, _msixCapability + MsixRegisters.MessageControl, value);
        }
    }

    private byte Read8(ulong address)
    {
        Span<byte> data = stackalloc byte[1];
        _machine.Mmio.TryRead(address, data);
        return data[0];
    }

    private ushort Read16(ulong address)
    {
        Span<byte> data = stackalloc byte[2];
        _machine.Mmio.TryRead(address, data);
        return BinaryPrimitives.ReadUInt16LittleEndian(data);
    }

    private uint Read32(ulong address)
    {
        Span<byte> data = stackalloc byte[4];
        _machine.Mmio.TryRead(address, data);
        return BinaryPrimitives.ReadUInt32LittleEndian(data);
    }

    private void Write8(ulong address, byte value) => _machine.Mmio.TryWrite(address, [value]);

    private void Write16(ulong address, ushort value)
    {
        Span<byte> data = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(data, value);
        _machine.Mmio.TryWrite(address, data);
    }

    private void Write32(ulong address, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        _machine.Mmio.TryWrite(address, data);
    }

    // 64-bit fields as two 32-bit halves, low first (virtio 1.2 §4.1.3.1).
    private void Write64(ulong address, ulong value)
    {
        Write32(address, (uint)value);
        Write32(address + 4, (uint)(value >> 32));
    }
}
