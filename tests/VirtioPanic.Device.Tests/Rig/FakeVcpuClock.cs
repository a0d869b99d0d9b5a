namespace VirtioPanic.Device.Tests.Rig;

// A hypervisor's per-vCPU run time under the test's control: a vCPU's clock advances only when the
// test says that vCPU ran (a halted or descheduled vCPU's clock stands still).
internal sealed class FakeVcpuClock : IVcpuRunClock
{
    private readonly long[] _ticks;
    private int _calls;

    public FakeVcpuClock(int count, TimeSpan origin = default)
    {
        _ticks = new long[count];
        Array.Fill(_ticks, origin.Ticks);
    }

    public int Calls => Volatile.Read(ref _calls);

    public TimeSpan GetRunTime(int vcpuIndex)
    {
        Interlocked.Increment(ref _calls);
        return TimeSpan.FromTicks(Volatile.Read(ref _ticks[vcpuIndex]));
    }

    public void Ran(int vcpu, TimeSpan time) => Interlocked.Add(ref _ticks[vcpu], time.Ticks);
}
