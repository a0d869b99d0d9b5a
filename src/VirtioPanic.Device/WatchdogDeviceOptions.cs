namespace VirtioPanic.Device;

/// <summary>Host-side settings of one watchdog device. Validated when the device is created.</summary>
public sealed class WatchdogDeviceOptions
{
    /// <summary>The instance identifier carried by every event and by the status query.</summary>
    /// <remarks>Defaults to <c>"watchdog0"</c>. Must not be empty.</remarks>
    public string DeviceId { get; set; } = "watchdog0";

    /// <summary>The feature bits the device offers (the baseline protocol is always present).</summary>
    /// <remarks>Defaults to <see cref="WatchdogFeatures.All"/>. PRETIMEOUT needs CONTROL and LOG_TAIL needs EVENTS. VCPU_STALL is
    /// offered only when <see cref="VcpuCount"/> is not 0 as well (without it the bit is left out and the configuration stays
    /// 20 bytes, as QEMU command lines with <c>config_size=20</c> expect).</remarks>
    public WatchdogFeatures Features { get; set; } = WatchdogFeatures.All;

    /// <summary>The timeout after a reset, and the only one without CONTROL (<c>default_timeout_ms</c>).</summary>
    /// <remarks>Defaults to 20 seconds, the bite Cloud Hypervisor's device applies to a driver that pings every 15 seconds. Whole milliseconds.</remarks>
    public TimeSpan DefaultTimeout { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>The smallest timeout a driver may choose (<c>min_timeout_ms</c>).</summary>
    /// <remarks>Defaults to 1 second. Whole milliseconds, at least 1 ms. A very small minimum lets a guest make the device report expiries often.</remarks>
    public TimeSpan MinTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The largest timeout a driver may choose (<c>max_timeout_ms</c>).</summary>
    /// <remarks>Defaults to 1 hour. Whole milliseconds, at most 2^32 - 1 ms.</remarks>
    public TimeSpan MaxTimeout { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Run time the guest is always given after the host resumes or restores the VM before the watchdog may expire.</summary>
    /// <remarks>Defaults to 10 seconds; zero disables the grace; at most 2^32 - 1 ms. The grace holds whatever the guest does inside the window (re-arming, STOP then START, a new timeout, a device reset).</remarks>
    public TimeSpan ResumeGrace { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How many events may wait for the host before the device coalesces critical events and drops the others.</summary>
    /// <remarks>Defaults to 64 (at least 4). Half of it is the limit for non-critical events, so they cannot crowd out panics and expiries. Bounds host memory per device to about this many events of at most 18 KiB each.</remarks>
    public int EventCapacity { get; set; } = 64;

    /// <summary>Whether the device starts paused: its run-time clock waits for <see cref="WatchdogDevice.Resume"/>.</summary>
    /// <remarks>Defaults to false (the VM is taken to be running).</remarks>
    public bool StartPaused { get; set; }

    /// <summary>How many vCPUs per-vCPU stall detection tracks (<c>vcpu_count</c>, spec §6.12): the VM's vCPU count.</summary>
    /// <remarks>Defaults to 0: VIRTIO_WDT_F_VCPU_STALL is not offered and the configuration is 20 bytes. From 1 to
    /// <see cref="MaxVcpuCount"/> (1024) the bit is offered (when <see cref="Features"/> has it) and the configuration is 36 bytes.
    /// The device keeps about 64 bytes per vCPU.</remarks>
    public int VcpuCount { get; set; }

    /// <summary>Stage one of per-vCPU stall detection (<c>vcpu_timeout_ms</c>): the vCPU run time without a pet after which a vCPU is reported stalled.</summary>
    /// <remarks>Defaults to 10 seconds. Whole milliseconds, from 1 second to 2^32 - 1 ms. Used only with <see cref="VcpuCount"/>.</remarks>
    public TimeSpan VcpuStallTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Stage two of per-vCPU stall detection (<c>vcpu_stage2_ms</c>): the VM run time after stage one without a pet of that vCPU after which the host's stall policy acts.</summary>
    /// <remarks>Defaults to 10 seconds. Whole milliseconds, from 1 ms to 2^32 - 1 ms. Used only with <see cref="VcpuCount"/>.</remarks>
    public TimeSpan VcpuStallSecondStage { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The largest <see cref="VcpuCount"/> (VIRTIO_WDT_VCPU_MAX, spec §4).</summary>
    public const int MaxVcpuCount = 1024;

    /// <summary>The smallest <see cref="VcpuStallTimeout"/>.</summary>
    public static readonly TimeSpan MinVcpuStallTimeout = TimeSpan.FromSeconds(1);

    /// <summary>Throws when a setting is out of range.</summary>
    /// <exception cref="ArgumentException">A setting is invalid; the message names it.</exception>
    public void Validate()
    {
        if (string.IsNullOrEmpty(DeviceId))
        {
            throw new ArgumentException("WatchdogDeviceOptions.DeviceId must not be empty.", nameof(DeviceId));
        }

        if ((Features & ~WatchdogFeatures.All) != 0)
        {
            throw new ArgumentException($"WatchdogDeviceOptions.Features has unknown bits 0x{(ulong)(Features & ~WatchdogFeatures.All):x}.", nameof(Features));
        }

        if ((Features & WatchdogFeatures.Pretimeout) != 0 && (Features & WatchdogFeatures.Control) == 0)
        {
            throw new ArgumentException("WatchdogDeviceOptions.Features: Pretimeout requires Control.", nameof(Features));
        }

        if ((Features & WatchdogFeatures.LogTail) != 0 && (Features & WatchdogFeatures.Events) == 0)
        {
            throw new ArgumentException("WatchdogDeviceOptions.Features: LogTail requires Events.", nameof(Features));
        }

        CheckMilliseconds(MinTimeout, nameof(MinTimeout));
        CheckMilliseconds(DefaultTimeout, nameof(DefaultTimeout));
        CheckMilliseconds(MaxTimeout, nameof(MaxTimeout));
        if (!(MinTimeout <= DefaultTimeout && DefaultTimeout <= MaxTimeout))
        {
            throw new ArgumentException("WatchdogDeviceOptions: MinTimeout <= DefaultTimeout <= MaxTimeout must hold.", nameof(DefaultTimeout));
        }

        if (ResumeGrace < TimeSpan.Zero || ResumeGrace.TotalMilliseconds > uint.MaxValue)
        {
            throw new ArgumentException($"WatchdogDeviceOptions.ResumeGrace must be between zero and {uint.MaxValue} ms.", nameof(ResumeGrace));
        }

        if (EventCapacity < 4)
        {
            throw new ArgumentException("WatchdogDeviceOptions.EventCapacity must be at least 4.", nameof(EventCapacity));
        }

        if (VcpuCount is < 0 or > MaxVcpuCount)
        {
            throw new ArgumentException($"WatchdogDeviceOptions.VcpuCount must be from 0 to {MaxVcpuCount}.", nameof(VcpuCount));
        }

        CheckMilliseconds(VcpuStallTimeout, nameof(VcpuStallTimeout));
        if (VcpuStallTimeout < MinVcpuStallTimeout)
        {
            throw new ArgumentException("WatchdogDeviceOptions.VcpuStallTimeout must be at least 1 second.", nameof(VcpuStallTimeout));
        }

        CheckMilliseconds(VcpuStallSecondStage, nameof(VcpuStallSecondStage));
    }

    private static void CheckMilliseconds(TimeSpan value, string name)
    {
        if (value < TimeSpan.FromMilliseconds(1) || value.Ticks % TimeSpan.TicksPerMillisecond != 0 || value.TotalMilliseconds > uint.MaxValue)
        {
            throw new ArgumentException($"WatchdogDeviceOptions.{name} must be a whole number of milliseconds between 1 ms and {uint.MaxValue} ms.", name);
        }
    }
}
