using System.Buffers.Binary;
using VirtioPanic.Device;

namespace VirtioPanic.GuestDriver.Watchdog;

// Per-vCPU stall detection, the driver side of spec §6.12 (VIRTIO_WDT_F_VCPU_STALL), shaped like
// Linux's vcpu_stall_detector: a pinned per-CPU hrtimer pets vcpu_heartbeat with that CPU's index
// every vcpu_timeout_ms / 4 (WDT-DRV-19), each write one 4-byte store with a per-CPU sequence
// 1..32767 that skips 0 (WDT-DRV-18: a value that differs from that CPU's previous write and is
// never 0, so a transport that forwards whole configuration images does not drop it); the CPU
// hotplug teardown writes OFFLINE, and so does driver removal for every CPU it pets. A VCPU_STALL
// notice (stage one) panics with a message naming the CPU, unless the vcpu_stall_panic module
// parameter (VcpuStallPanic) is off, which only logs it.
//
// The harness has one vCPU thread: every guest CPU's hrtimer runs there (GuestCpu.StartTimer).
// A CPU that hangs with interrupts off is modelled by StallCpu: its timer stops firing and it
// writes nothing, which is what the device then sees of a hard-locked CPU.
public sealed partial class WatchdogDriver
{
    private readonly List<VcpuStallNotice> _stallNotices = [];
    private ushort[] _vcpuSequences = [];
    private ITimer?[] _vcpuTimers = [];
    private long _vcpuPets;

    /// <summary>The vCPU slots the device tracks (<c>vcpu_count</c>); 0 when VIRTIO_WDT_F_VCPU_STALL is not negotiated.</summary>
    public int VcpuCount { get; private set; }

    /// <summary>The device's stage-one timeout (<c>vcpu_timeout_ms</c>), in that vCPU's run time.</summary>
    public TimeSpan VcpuTimeout { get; private set; }

    /// <summary>The device's stage two (<c>vcpu_stage2_ms</c>), in VM run time after the notice.</summary>
    public TimeSpan VcpuStage2 { get; private set; }

    /// <summary>The per-CPU petting interval: <see cref="VcpuTimeout"/> / 4, as the reference driver uses.</summary>
    public TimeSpan VcpuPetInterval => VcpuTimeout / 4;

    /// <summary><c>vcpu_heartbeat</c> writes made (pets and OFFLINE).</summary>
    public long VcpuHeartbeatWrites => Interlocked.Read(ref _vcpuPets);

    /// <summary>VCPU_STALL notices received, oldest first.</summary>
    public IReadOnlyList<VcpuStallNotice> VcpuStallNotices => _stallNotices;

    /// <summary>Called (on the vCPU) for each VCPU_STALL notice, after the driver panicked on it (or only logged it, without <see cref="WatchdogDriverOptions.VcpuStallPanic"/>), with the path the panic took (null when it only logged).</summary>
    public Action<VcpuStallNotice, PanicReportPath?>? VcpuStallHandler { get; set; }

    private bool HasVcpuStall => (Features & WatchdogFeatures.VcpuStall) != 0;

    /// <summary>The panic message for a stall notice, as the reference driver prints it.</summary>
    /// <param name="notice">The notice.</param>
    /// <returns><c>virtio_wdt: vCPU N stalled for M ms</c>.</returns>
    public static string VcpuStallMessage(VcpuStallNotice notice) => $"virtio_wdt: vCPU {notice.Vcpu} stalled for {(long)notice.StalledFor.TotalMilliseconds} ms";

    /// <summary>One PET of <paramref name="cpu"/>'s slot: a single 4-byte write of <c>vcpu_heartbeat</c> (what the CPU's hrtimer does).</summary>
    /// <param name="cpu">The CPU's index, below <see cref="VcpuCount"/>.</param>
    /// <returns><see cref="WatchdogResult.NotSupported"/> without VIRTIO_WDT_F_VCPU_STALL, <see cref="WatchdogResult.InvalidArgument"/> for an index out of range.</returns>
    public WatchdogResult PetVcpu(int cpu) => WriteVcpuHeartbeat(cpu, offline: false);

    /// <summary>OFFLINE for <paramref name="cpu"/> (CPU hot-unplug): its hrtimer stops and the device stops tracking it.</summary>
    /// <param name="cpu">The CPU's index, below <see cref="VcpuCount"/>.</param>
    /// <returns>As <see cref="PetVcpu"/>.</returns>
    public WatchdogResult OfflineVcpu(int cpu)
    {
        if (HasVcpuStall && (uint)cpu < (uint)VcpuCount)
        {
            _vcpuTimers[cpu]?.Dispose();
            _vcpuTimers[cpu] = null;
        }

        return WriteVcpuHeartbeat(cpu, offline: true);
    }

    /// <summary>Starts the per-CPU hrtimers of <paramref name="cpus"/> (every CPU slot when null): a first PET now, then one every <see cref="VcpuPetInterval"/>.</summary>
    /// <param name="cpus">The online CPUs.</param>
    /// <returns><see cref="WatchdogResult.NotSupported"/> without VIRTIO_WDT_F_VCPU_STALL, <see cref="WatchdogResult.InvalidArgument"/> for an index out of range (nothing started then).</returns>
    public WatchdogResult StartVcpuPetting(IEnumerable<int>? cpus = null)
    {
        if (!HasVcpuStall)
        {
            return WatchdogResult.NotSupported;
        }

        int[] online = cpus is null ? [.. Enumerable.Range(0, VcpuCount)] : [.. cpus];
        if (online.Any(c => (uint)c >= (uint)VcpuCount))
        {
            return WatchdogResult.InvalidArgument;
        }

        foreach (int cpu in online)
        {
            _vcpuTimers[cpu]?.Dispose();
            WriteVcpuHeartbeat(cpu, offline: false);
            int index = cpu;
            _vcpuTimers[cpu] = _kernel.Cpu.StartTimer(() => PetFromTimer(index), VcpuPetInterval, VcpuPetInterval);
        }

        return WatchdogResult.Ok;
    }

    /// <summary>Models <paramref name="cpu"/> hard-locking with interrupts off: its hrtimer stops firing and nothing is written for it (no OFFLINE).</summary>
    /// <param name="cpu">The CPU's index.</param>
    public void StallCpu(int cpu)
    {
        if ((uint)cpu < (uint)_vcpuTimers.Length)
        {
            _vcpuTimers[cpu]?.Dispose();
            _vcpuTimers[cpu] = null;
        }
    }

    /// <summary>Whether <paramref name="cpu"/>'s hrtimer is petting.</summary>
    /// <param name="cpu">The CPU's index.</param>
    /// <returns>False for a stalled, offline or unknown CPU.</returns>
    public bool IsPettingVcpu(int cpu) => (uint)cpu < (uint)_vcpuTimers.Length && _vcpuTimers[cpu] is not null;

    /// <summary>Driver removal's part (WDT-DRV-19): stops every per-CPU hrtimer and writes OFFLINE for each CPU it was petting.</summary>
    public void StopVcpuPetting()
    {
        for (int cpu = 0; cpu < _vcpuTimers.Length; cpu++)
        {
            if (_vcpuTimers[cpu] is not null)
            {
                OfflineVcpu(cpu);
            }
        }
    }

    // Probe, after feature negotiation: the slot count and the device's timeouts.
    private void ReadVcpuConfig()
    {
        if (!HasVcpuStall)
        {
            return;
        }

        uint count = _device.ReadConfigUInt32(WatchdogWire.ConfigVcpuCount);

        // A device that says nonsense gets no pets (WDT-DRV-18 keeps the index below vcpu_count).
        VcpuCount = count is >= 1 and <= WatchdogWire.VcpuMax ? (int)count : 0;
        VcpuTimeout = Milliseconds(_device.ReadConfigUInt32(WatchdogWire.ConfigVcpuTimeout));
        VcpuStage2 = Milliseconds(_device.ReadConfigUInt32(WatchdogWire.ConfigVcpuStage2));
        _vcpuSequences = new ushort[VcpuCount];
        _vcpuTimers = new ITimer?[VcpuCount];
    }

    private void PetFromTimer(int cpu)
    {
        // A timer that fired after it was stopped (its callback was already queued) writes nothing.
        if (_vcpuTimers[cpu] is not null)
        {
            WriteVcpuHeartbeat(cpu, offline: false);
        }
    }

    private WatchdogResult WriteVcpuHeartbeat(int cpu, bool offline)
    {
        if (!HasVcpuStall || VcpuCount == 0)
        {
            return WatchdogResult.NotSupported;
        }

        if ((uint)cpu >= (uint)VcpuCount)
        {
            return WatchdogResult.InvalidArgument;
        }

        // 1..32767, never 0: differs from this CPU's previous write (WDT-DRV-18).
        ushort sequence = _vcpuSequences[cpu] >= WatchdogWire.VcpuSequenceMax ? (ushort)1 : (ushort)(_vcpuSequences[cpu] + 1);
        _vcpuSequences[cpu] = sequence;
        uint value = (uint)cpu | ((uint)sequence << WatchdogWire.VcpuSequenceShift) | (offline ? WatchdogWire.VcpuOffline : 0);
        _device.WriteConfigUInt32(WatchdogWire.ConfigVcpuHeartbeat, value);
        Interlocked.Increment(ref _vcpuPets);
        return WatchdogResult.Ok;
    }

    // A VCPU_STALL notice (noticeq, type 2): panic naming the CPU, or only log it.
    private void OnVcpuStallNotice(ReadOnlySpan<byte> notice)
    {
        var received = new VcpuStallNotice(
            BinaryPrimitives.ReadUInt16LittleEndian(notice[2..]),
            Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(notice[4..])),
            Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(notice[8..])),
            Milliseconds(BinaryPrimitives.ReadUInt32LittleEndian(notice[12..])));
        _stallNotices.Add(received);
        PanicReportPath? path = null;
        if (_options.VcpuStallPanic)
        {
            // A panicking kernel stops the other CPUs and runs no hrtimers: nothing pets from here on.
            foreach (ITimer? timer in _vcpuTimers)
            {
                timer?.Dispose();
            }

            Array.Clear(_vcpuTimers);
            path = Panic(new PanicReport { Message = VcpuStallMessage(received) });
        }

        VcpuStallHandler?.Invoke(received, path);
    }
}
