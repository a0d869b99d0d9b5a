using VirtioPanic.Device;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Fuzz.Targets;

// A guest's (and the host's) accesses to a transport, decoded one op at a time. Op byte:
//   bits 0-2 kind, bits 3-5 access width (Widths), bits 6-7 a BAR or region selector
//   0 config-space read     PCI ReadConfig(u16 offset); MMIO Read(u16 offset)
//   1 config-space write    PCI WriteConfig(u16 offset, data); MMIO Write(u16 offset, data)
//   2 BAR read              PCI ReadBar(selector bit 6 ? 2 : 0, u16 offset); MMIO Read
//   3 BAR write             PCI WriteBar(bar, u16 offset, data); MMIO Write
//   4 memory read           PCI TryReadMemory(BAR mapping[bit 6] + u16 offset); MMIO Read
//   5 memory write          PCI TryWriteMemory(same, data); MMIO Write
//   6 doorbell              NotifyQueue(u8 queue)
//   7 host and guest events, u8 sub-op:
//       0 advance the clock by u16 * 10 ms   1 transport Reset     2 SaveState + RestoreState (must be Ok)
//       3 guest memory write (u16 offset, u16 value)               4 Pause   5 Resume
//       6 OnVmReset               7 ring every doorbell (GetDoorbells) 8 device GetStatus + SaveState
//       9 device SaveState + RestoreState (must not throw)
// Every data field is `width` bytes. None of these calls may throw for any guest access.
internal static class TransportOps
{
    internal static readonly int[] Widths = [4, 2, 1, 8, 0, 3, 16, 4];

    internal static void Run(TransportRig rig, ref FuzzInput reader, int maxOps = 2048)
    {
        Span<byte> data = stackalloc byte[16];
        int ops = 0;
        while (!reader.IsEmpty && ops++ < maxOps)
        {
            byte op = reader.U8();
            int width = Widths[(op >> 3) & 7];
            Span<byte> access = data[..width];
            int selector = op >> 6;
            switch (op & 7)
            {
                case 0:
                case 2:
                case 4:
                    Read(rig, op & 7, selector, reader.U16(), access);
                    break;
                case 1:
                case 3:
                case 5:
                    ushort offset = reader.U16();
                    access.Clear();
                    reader.Bytes(width).CopyTo(access);
                    Write(rig, op & 7, selector, offset, access);
                    break;
                case 6:
                    byte queue = reader.U8();
                    _ = rig.Pci is not null ? rig.Pci.NotifyQueue(queue % 4) : rig.Mmio!.NotifyQueue(queue % 4);
                    break;
                default:
                    Event(rig, ref reader, reader.U8());
                    break;
            }

            rig.DrainEvents();
        }
    }

    private static void Read(TransportRig rig, int kind, int selector, ushort offset, Span<byte> data)
    {
        if (rig.Mmio is { } mmio)
        {
            mmio.Read(offset, data);
            return;
        }

        VirtioPciFunction pci = rig.Pci!;
        switch (kind)
        {
            case 0:
                pci.ReadConfig(offset, data);
                break;
            case 2:
                pci.ReadBar((selector & 1) != 0 ? VirtioPciLayout.MsixBarIndex : VirtioPciLayout.VirtioBarIndex, offset, data);
                break;
            default:
                _ = pci.TryReadMemory(BarAddress(pci, selector) + offset, data);
                break;
        }
    }

    private static void Write(TransportRig rig, int kind, int selector, ushort offset, ReadOnlySpan<byte> data)
    {
        if (rig.Mmio is { } mmio)
        {
            mmio.Write(offset, data);
            return;
        }

        VirtioPciFunction pci = rig.Pci!;
        switch (kind)
        {
            case 1:
                pci.WriteConfig(offset, data);
                break;
            case 3:
                pci.WriteBar((selector & 1) != 0 ? VirtioPciLayout.MsixBarIndex : VirtioPciLayout.VirtioBarIndex, offset, data);
                break;
            default:
                _ = pci.TryWriteMemory(BarAddress(pci, selector) + offset, data);
                break;
        }
    }

    private static ulong BarAddress(VirtioPciFunction pci, int selector)
    {
        PciBarMapping[] mappings = pci.GetBarMappings();
        return mappings[(selector & 1) % mappings.Length].Address;
    }

    private static void Event(TransportRig rig, ref FuzzInput reader, byte subOp)
    {
        switch (subOp % 10)
        {
            case 0:
                rig.Time.Advance(TimeSpan.FromMilliseconds(reader.U16() * 10.0));
                break;
            case 1:
                if (rig.Pci is not null)
                {
                    rig.Pci.Reset();
                }
                else
                {
                    rig.Mmio!.Reset();
                }

                break;
            case 2:
                byte[] saved = rig.SaveState();
                SnapshotStatus status = rig.RestoreState(saved);
                if (status != SnapshotStatus.Ok)
                {
                    throw Check.Violation($"{rig.Kind} RestoreState refused the snapshot SaveState just took: {status}");
                }

                break;
            case 3:
                rig.Guest.GuestWrite(reader.U16(), reader.U16());
                break;
            case 4:
                rig.Device.Pause();
                break;
            case 5:
                rig.Device.Resume();
                break;
            case 6:
                rig.Device.OnVmReset(WatchdogBootReason.Host);
                break;
            case 7:
                if (rig.Pci is not null)
                {
                    foreach (VirtioDoorbell bell in rig.Pci.GetDoorbells())
                    {
                        _ = rig.Pci.NotifyQueue(bell.QueueIndex);
                    }
                }

                break;
            case 8:
                _ = rig.Device.GetStatus();
                _ = rig.Device.SaveState();
                break;
            default:
                DeviceRoundTrip(rig.Device);
                break;
        }
    }

    // A state the device saved must restore (the device is quiesced around it as a VMM would).
    internal static void DeviceRoundTrip(WatchdogDevice device)
    {
        byte[] state = device.SaveState();
        try
        {
            device.RestoreState(state);
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            throw new InvariantViolationException("WatchdogDevice.RestoreState refused the state SaveState just returned", e);
        }
    }
}
