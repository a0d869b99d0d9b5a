using BenchmarkDotNet.Attributes;
using VirtioPanic.Device;
using VirtioPanic.Hosting;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Virtio.Memory;
using Mmio = VirtioPanic.Transport.Mmio.VirtioMmioRegisters;

namespace VirtioPanic.Benchmarks.Hosting;

// Guest panic write → VM-control call: the guest writes panic_events through the virtio-mmio
// register window; the operation ends when the policy service has journaled the decision (fsync)
// and called the VM control (destroy → PowerOffAsync), and has finished journaling the outcome.
// Percentiles of the write → call latency alone: `--panic-latency` (PanicLatencyRun).
[MemoryDiagnoser]
public class PanicToActionBenchmarks
{
    private readonly byte[] _panic = [1, 0, 0, 0];
    private string _directory = string.Empty;
    private GuestMemory _memory = null!;
    private WatchdogDevice _device = null!;
    private VirtioMmioTransport _mmio = null!;
    private PolicyService _manager = null!;
    private RecordingVmControl _vm = null!;
    private long _handled;

    [Params(JournalDurability.FlushBeforeAction, JournalDurability.FlushAfterAction)]
    public JournalDurability Durability { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _directory = HostingBench.JournalDirectory();
        _memory = GuestMemory.CreateAnonymous(1 << 20);
        _device = new WatchdogDevice(new WatchdogDeviceOptions { DeviceId = "bench", EventCapacity = 1024 });
        _mmio = new VirtioMmioTransport(_device, _memory, new Transport.NullInterruptSink());
        _vm = new RecordingVmControl();
        _manager = HostingBench.Manager(_directory, new DevicePolicy { OnPanic = PanicAction.Destroy, StormThreshold = 0 }, Durability);
        _manager.EventHandled += (_, _) => Interlocked.Increment(ref _handled);
        _manager.Attach(_device, _vm);
        _manager.Start();
    }

    [Benchmark]
    public void PanicWriteToVmControlCall()
    {
        long handled = Volatile.Read(ref _handled);
        _mmio.Write(Mmio.Config + 8, _panic);
        var spin = default(SpinWait);
        while (Volatile.Read(ref _handled) == handled)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _manager.StopAsync().GetAwaiter().GetResult();
        _manager.Dispose();
        _device.Dispose();
        _memory.Dispose();
        HostingBench.Delete(_directory);
    }
}
