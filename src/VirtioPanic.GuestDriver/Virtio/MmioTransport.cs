using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.Virtio.Queue;
using Regs = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.GuestDriver.Virtio;

// Linux drivers/virtio/virtio_mmio.c, version 2 only:
//   probe      MagicValue "virt", Version 2 (1 is legacy: refused here), DeviceID 0 = placeholder
//              (ignored without error, virtio 1.2 §4.2.2.2)
//   registers  aligned 32-bit accesses below 0x100; configuration at 0x100+ with field widths
//   queues     QueueSel; QueueReady must read 0; QueueSizeMax (0 = absent); QueueSize; the three
//              area pairs; QueueReady = 1 (vm_setup_vq)
//   notify     32-bit write of the queue index to QueueNotify
//   interrupt  one line: read InterruptStatus, write it to InterruptACK, then bit 1 = config
//              changed, bit 0 = every queue (vm_interrupt)
internal sealed class MmioTransport : GuestTransport
{
    private readonly IGuestMachine _machine;
    private readonly VirtioMmioSlot _slot;
    private readonly uint _deviceId;
    private Func<bool>? _handler;
    private int _vector = -1;

    private MmioTransport(IGuestMachine machine, VirtioMmioSlot slot, uint deviceId)
    {
        _machine = machine;
        _slot = slot;
        _deviceId = deviceId;
    }

    internal override VirtioTransportKind Kind => VirtioTransportKind.Mmio;

    internal override string Location => $"virtio-mmio 0x{_slot.Base:x} irq {_slot.Line}";

    internal override uint DeviceId => _deviceId;

    internal override ulong StatusRegister => Regs.Status;

    internal override ulong FeatureRegister => Regs.DeviceFeatures;

    internal static MmioTransport? TryProbe(IGuestMachine machine, VirtioMmioSlot slot)
    {
        var probe = new MmioTransport(machine, slot, 0);
        if (probe.Read32(Regs.MagicValue) != Regs.Magic || probe.Read32(Regs.Version) != 2)
        {
            return null;
        }

        uint id = probe.Read32(Regs.DeviceId);
        return id == 0 ? null : new MmioTransport(machine, slot, id);
    }

    internal override byte ReadStatus() => (byte)Read32(Regs.Status);

    internal override void WriteStatus(byte status) => Write32(Regs.Status, status);

    internal override ulong ReadDeviceFeatures()
    {
        Write32(Regs.DeviceFeaturesSel, 0);
        ulong low = Read32(Regs.DeviceFeatures);
        Write32(Regs.DeviceFeaturesSel, 1);
        return low | ((ulong)Read32(Regs.DeviceFeatures) << 32);
    }

    internal override void WriteDriverFeatures(ulong features)
    {
        Write32(Regs.DriverFeaturesSel, 0);
        Write32(Regs.DriverFeatures, (uint)features);
        Write32(Regs.DriverFeaturesSel, 1);
        Write32(Regs.DriverFeatures, (uint)(features >> 32));
    }

    internal override ushort ReadQueueMaxSize(int queue)
    {
        Write32(Regs.QueueSel, (uint)queue);
        return (ushort)Math.Min(Read32(Regs.QueueSizeMax), ushort.MaxValue);
    }

    internal override bool IsQueueEnabled(int queue)
    {
        Write32(Regs.QueueSel, (uint)queue);
        return Read32(Regs.QueueReady) != 0;
    }

    internal override bool ActivateQueue(int queue, VirtqueueConfig config, ushort vector)
    {
        Write32(Regs.QueueSel, (uint)queue);
        Write32(Regs.QueueSize, config.Size);
        Write32(Regs.QueueDescLow, (uint)config.DescriptorArea);
        Write32(Regs.QueueDescHigh, (uint)(config.DescriptorArea >> 32));
        Write32(Regs.QueueDriverLow, (uint)config.DriverArea);
        Write32(Regs.QueueDriverHigh, (uint)(config.DriverArea >> 32));
        Write32(Regs.QueueDeviceLow, (uint)config.DeviceArea);
        Write32(Regs.QueueDeviceHigh, (uint)(config.DeviceArea >> 32));
        Write32(Regs.QueueReady, 1);
        return true;
    }

    internal override void Notify(int queue) => Write32(Regs.QueueNotify, (uint)queue);

    internal override uint ReadConfigGeneration() => Read32(Regs.ConfigGeneration);

    internal override void ReadConfigRaw(uint offset, Span<byte> data) => _machine.Mmio.TryRead(_slot.Base + Regs.Config + offset, data);

    internal override void WriteConfigRaw(uint offset, ReadOnlySpan<byte> data) => _machine.Mmio.TryWrite(_slot.Base + Regs.Config + offset, data);

    internal override VirtioInterruptMode SetUpInterrupts(GuestCpu cpu, int queueCount, VirtioInterruptMode preference, Func<int, bool> onQueue, Func<bool> onAllQueues, Func<bool> onConfig)
    {
        TearDownInterrupts(cpu);
        _handler = () =>
        {
            uint status = Read32(Regs.InterruptStatus);
            if (status == 0)
            {
                return false;
            }

            Write32(Regs.InterruptAck, status);
            if ((status & Regs.InterruptConfigChange) != 0)
            {
                onConfig();
            }

            if ((status & Regs.InterruptUsedBuffer) != 0)
            {
                onAllQueues();
            }

            return true;
        };
        _vector = cpu.RequestLine(_slot.Line, _handler);
        return VirtioInterruptMode.Line;
    }

    internal override ushort QueueVector(int position) => NoVector;

    internal override void TearDownInterrupts(GuestCpu cpu)
    {
        if (_handler is not null)
        {
            cpu.FreeInterrupt(_vector, _handler);
            _handler = null;
        }
    }

    internal override void RawRead(ulong offset, Span<byte> data) => _machine.Mmio.TryRead(_slot.Base + offset, data);

    internal override void RawWrite(ulong offset, ReadOnlySpan<byte> data) => _machine.Mmio.TryWrite(_slot.Base + offset, data);

    private uint Read32(int register)
    {
        Span<byte> data = stackalloc byte[4];
        _machine.Mmio.TryRead(_slot.Base + (ulong)register, data);
        return BinaryPrimitives.ReadUInt32LittleEndian(data);
    }

    private void Write32(int register, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        _machine.Mmio.TryWrite(_slot.Base + (ulong)register, data);
    }
}
