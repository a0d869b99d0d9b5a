using System.Globalization;
using VirtioPanic.Device;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>
/// What the ID-35 real-kernel tests share: the reference driver as shipped (virtio ID 35, real
/// feature negotiation, <c>-Werror</c>), the ioctl helper, the test policy, and reading markers.
/// </summary>
internal static class Id35Guest
{
    internal const string ModuleName = "virtio_wdt";

    /// <summary>QEMU 11's generic vhost-user device presenting our device: three queues, the 20-byte configuration.</summary>
    internal const string PciDevice = "vhost-user-test-device-pci,virtio-id=35,num_vqs=3,vq_size=64,config_size=20";

    /// <summary>The same on virtio-mmio (<c>-M microvm</c>).</summary>
    internal const string MmioDevice = "vhost-user-test-device,virtio-id=35,num_vqs=3,vq_size=64,config_size=20";

    internal static readonly Dictionary<WatchdogEventKind, PolicyAction> Policy = new()
    {
        [WatchdogEventKind.Expired] = PolicyAction.Reset,
        [WatchdogEventKind.GuestPanicked] = PolicyAction.Dump,
        [WatchdogEventKind.GuestCrashLoaded] = PolicyAction.None,   // let the crash kernel work
        [WatchdogEventKind.GuestShutdown] = PolicyAction.None,
        [WatchdogEventKind.Pretimeout] = PolicyAction.None,
    };

    /// <summary>
    /// What <see cref="NewDevice"/> offers with <see cref="WatchdogFeatures.All"/>: every feature but
    /// VIRTIO_WDT_F_VCPU_STALL, which needs a vCPU count (these devices have none; the stall
    /// tests in <see cref="Qemu11VcpuStallTests"/> set one and the 36-byte configuration).
    /// </summary>
    internal const WatchdogFeatures Offered = WatchdogFeatures.All & ~WatchdogFeatures.VcpuStall;

    internal static string DriverSource => Path.Combine(TestPaths.RepositoryRoot(), "src", "guest", "linux");

    /// <summary>The driver for Debian's 6.1 kernel (QEMU guests).</summary>
    internal static string Driver(KernelPrerequisites kernel) => GuestModuleBuilder.BuildWithOwnKbuild(kernel, DriverSource, ModuleName);

    /// <summary>The same source built for User-Mode Linux.</summary>
    internal static string UmlDriver(KernelPrerequisites kernel) => GuestModuleBuilder.BuildForUml(kernel, DriverSource, ModuleName);

    /// <summary>The static ioctl helper (<c>RealKernel/Guest/wdctl</c>), installed as <c>/bin/vp_wdctl</c>.</summary>
    internal static InitramfsBuilder AddWdctl(this InitramfsBuilder builder) =>
        builder.AddFile("/bin/vp_wdctl", File.ReadAllBytes(GuestModuleBuilder.BuildStaticProgram(Path.Combine(GuestModuleBuilder.GuestSource("wdctl"), "vp_wdctl.c"))), "0755");

    internal static WatchdogDevice NewDevice(string id, TimeSpan defaultTimeout, TimeSpan? maxTimeout = null, WatchdogFeatures features = WatchdogFeatures.All) => new(new WatchdogDeviceOptions
    {
        DeviceId = id,
        Features = features,
        DefaultTimeout = defaultTimeout,
        MinTimeout = TimeSpan.FromSeconds(1),
        MaxTimeout = maxTimeout ?? TimeSpan.FromSeconds(60),
    });

    /// <summary>The text after the first occurrence of <paramref name="marker"/> on its line, trimmed, or null.</summary>
    internal static string? Line(QemuRun run, string marker)
    {
        foreach (string line in run.SerialLog.Split('\n'))
        {
            int at = line.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0)
            {
                return line[(at + marker.Length)..].Trim();
            }
        }

        return null;
    }

    /// <summary>The result the helper printed for <paramref name="op"/> (its first occurrence), e.g. "2" or "error Invalid argument".</summary>
    internal static string? Wdctl(QemuRun run, string op) => Line(run, $"VP-WDCTL {op} ");

    /// <summary>The feature bits the driver reports at probe ("features 0x3f" in its dev_info line).</summary>
    internal static ulong? GuestFeatures(QemuRun run)
    {
        string? line = Line(run, ": features 0x");
        if (line is null)
        {
            return null;
        }

        string hex = new([.. line.TakeWhile(char.IsAsciiHexDigit)]);
        return ulong.TryParse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong value) ? value : null;
    }

    internal static string Tail(string? text, int length) => text is null ? "(none)" : text.Length <= length ? text : text[^length..];
}
