namespace VirtioPanic.Device;

/// <summary>Host-side settings of one watchdog device. Validated when the device is created.</summary>
public sealed class WatchdogDeviceOptions
{
    /// <summary>The instance identifier carried by every event and by the status query.</summary>
    /// <remarks>Defaults to <c>"watchdog0"</c>. Must not be empty.</remarks>
    public string DeviceId { get; set; } = "watchdog0";

    /// <summary>The feature bits the device offers (the baseline protocol is always present).</summary>
    /// <remarks>Defaults to <see cref="WatchdogFeatures.All"/>. PRETIMEOUT needs CONTROL and LOG_TAIL needs EVENTS.</remarks>
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
    }

    private static void CheckMilliseconds(TimeSpan value, string name)
    {
        if (value < TimeSpan.FromMilliseconds(1) || value.Ticks % TimeSpan.TicksPerMillisecond != 0 || value.TotalMilliseconds > uint.MaxValue)
        {
            throw new ArgumentException($"WatchdogDeviceOptions.{name} must be a whole number of milliseconds between 1 ms and {uint.MaxValue} ms.", name);
        }
    }
}
