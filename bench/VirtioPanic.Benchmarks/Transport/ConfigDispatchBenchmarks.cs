using BenchmarkDotNet.Attributes;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Memory;
using Common = VirtioPanic.Transport.Pci.VirtioPciCommonConfigRegisters;
using Mmio = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Benchmarks.Transport;

// Cost of one guest register access on the control path, from the hypervisor's entry point to
// the value (configuration space, common configuration, virtio-mmio registers). Target: 0 bytes
// allocated per access.
[MemoryDiagnoser]
public class ConfigDispatchBenchmarks
{
    private readonly byte[] _four = new byte[4];
    private readonly byte[] _two = new byte[2];
    private readonly byte[] _one = new byte[1];
    private GuestMemory _memory = null!;
    private VirtioPciFunction _pci = null!;
    private VirtioMmioTransport _mmio = null!;

    [GlobalSetup]
    public void Setup()
    {
        _memory = GuestMemory.CreateAnonymous(4 << 20);
        _pci = TransportSetup.LivePci(_memory, new BenchDevice());
        _mmio = TransportSetup.LiveMmio(_memory, new BenchDevice());
    }

    [GlobalCleanup]
    public void Cleanup() => _memory.Dispose();

    [Benchmark(Description = "PCI config read: vendor/device dword")]
    public byte PciConfigReadId()
    {
        _pci.ReadConfig(PciConfigRegisters.VendorId, _four);
        return _four[0];
    }

    [Benchmark(Description = "PCI config read: BAR0 dword")]
    public byte PciConfigReadBar()
    {
        _pci.ReadConfig(PciConfigRegisters.Bar0, _four);
        return _four[0];
    }

    [Benchmark(Description = "PCI config write: interrupt line byte")]
    public void PciConfigWriteInterruptLine()
    {
        _one[0] = 11;
        _pci.WriteConfig(PciConfigRegisters.InterruptLine, _one);
    }

    [Benchmark(Description = "PCI common cfg read by GPA: queue_size")]
    public byte PciCommonReadQueueSize()
    {
        _pci.TryReadMemory(TransportSetup.VirtioBar + Common.QueueSize, _two);
        return _two[0];
    }

    [Benchmark(Description = "PCI common cfg read by GPA: device_status")]
    public byte PciCommonReadStatus()
    {
        _pci.TryReadMemory(TransportSetup.VirtioBar + Common.DeviceStatus, _one);
        return _one[0];
    }

    [Benchmark(Description = "MMIO read: Status")]
    public byte MmioReadStatus()
    {
        _mmio.Read(Mmio.Status, _four);
        return _four[0];
    }

    [Benchmark(Description = "MMIO read: invalid (misaligned) access")]
    public byte MmioReadInvalid()
    {
        _mmio.Read(Mmio.Status + 1, _four);
        return _four[0];
    }
}
