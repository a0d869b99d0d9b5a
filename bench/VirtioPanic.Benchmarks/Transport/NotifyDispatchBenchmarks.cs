using BenchmarkDotNet.Attributes;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Memory;
using Mmio = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Benchmarks.Transport;

// Cost of one driver kick from the hypervisor's entry point to IVirtioDevice.Notify on a live
// device (the device only counts it). Lock-free; target: 0 bytes allocated per kick.
[MemoryDiagnoser]
public class NotifyDispatchBenchmarks
{
    private readonly byte[] _queue0 = [0, 0];
    private readonly byte[] _mmioQueue0 = [0, 0, 0, 0];
    private GuestMemory _memory = null!;
    private VirtioPciFunction _pci = null!;
    private VirtioMmioTransport _mmio = null!;
    private ulong _doorbell;

    [GlobalSetup]
    public void Setup()
    {
        _memory = GuestMemory.CreateAnonymous(4 << 20);
        _pci = TransportSetup.LivePci(_memory, new BenchDevice());
        _mmio = TransportSetup.LiveMmio(_memory, new BenchDevice());
        _doorbell = _pci.GetDoorbells()[0].Address;
    }

    [GlobalCleanup]
    public void Cleanup() => _memory.Dispose();

    [Benchmark(Baseline = true, Description = "PCI NotifyQueue (hypervisor fast path)")]
    public bool PciNotifyQueue() => _pci.NotifyQueue(0);

    [Benchmark(Description = "PCI doorbell write by GPA")]
    public bool PciDoorbellByAddress() => _pci.TryWriteMemory(_doorbell, _queue0);

    [Benchmark(Description = "PCI doorbell write by BAR offset")]
    public void PciDoorbellByBar() => _pci.WriteBar(0, 0x3000, _queue0);

    [Benchmark(Description = "MMIO QueueNotify write")]
    public void MmioQueueNotify() => _mmio.Write(Mmio.QueueNotify, _mmioQueue0);

    [Benchmark(Description = "PCI kick for a disabled queue (dropped, counted)")]
    public bool PciNotifyDisabledQueue() => _pci.NotifyQueue(1);
}
