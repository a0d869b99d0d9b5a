using VirtioPanic.Device;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>Settings of a <see cref="WatchdogDriver"/> (what Linux takes as module parameters and Kconfig).</summary>
public sealed class WatchdogDriverOptions
{
    /// <summary>The device features the driver supports; it accepts what the device offers of them, never one without its prerequisite.</summary>
    /// <remarks>Defaults to <see cref="WatchdogFeatures.All"/> and <see cref="WatchdogFeatures.VcpuStall"/> (which a device offers only with a vCPU count).</remarks>
    public WatchdogFeatures Features { get; init; } = WatchdogFeatures.All | WatchdogFeatures.VcpuStall;

    /// <summary>Ring features the driver supports (VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED).</summary>
    /// <remarks>Defaults to VIRTIO_F_EVENT_IDX.</remarks>
    public ulong RingFeatures { get; init; } = VirtioFeatures.EventIndex;

    /// <summary>The <c>nowayout</c> module parameter: once started, the watchdog cannot be stopped.</summary>
    /// <remarks>Defaults to false.</remarks>
    public bool Nowayout { get; init; }

    /// <summary>Record buffers posted on <c>eventq</c> at probe time (1 to 16).</summary>
    /// <remarks>Defaults to 4.</remarks>
    public int RecordBuffers { get; init; } = 4;

    /// <summary>Notice buffers posted on <c>noticeq</c> (at least 1).</summary>
    /// <remarks>Defaults to 2.</remarks>
    public int NoticeBuffers { get; init; } = 2;

    /// <summary>Whether probe acknowledges <c>boot_reason</c> by writing 0 after reading it.</summary>
    /// <remarks>Defaults to true.</remarks>
    public bool ClearBootReason { get; init; } = true;

    /// <summary>How long a control request or heartbeat may take, on the machine clock.</summary>
    /// <remarks>Defaults to 1 second.</remarks>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The <c>vcpu_stall_panic</c> module parameter: a VCPU_STALL notice panics the guest with a message naming the CPU; false only logs it (<see cref="WatchdogDriver.VcpuStallHandler"/> still runs).</summary>
    /// <remarks>Defaults to true, as in the reference driver.</remarks>
    public bool VcpuStallPanic { get; init; } = true;

    /// <summary>How many times the panic notifier polls a committed record's status before it falls back to <c>panic_events</c> (a bounded wait, interrupts off).</summary>
    /// <remarks>Defaults to 10000.</remarks>
    public int PanicStatusPolls { get; init; } = 10_000;
}
