namespace VirtioPanic.VhostUser.Tests.RealKernel;

/// <summary>One guest run: what to boot, what to attach, how long it may take.</summary>
internal sealed class QemuMachineOptions
{
    /// <summary>The action word passed as <c>vp.action=</c> (see <see cref="InitramfsBuilder"/>).</summary>
    internal required string Action { get; init; }

    internal required string Initramfs { get; init; }

    /// <summary>Further kernel command-line words (e.g. <c>rng_core.default_quality=0</c>, <c>vp.count=4</c>).</summary>
    internal IReadOnlyList<string> KernelArguments { get; init; } = [];

    /// <summary>vhost-user devices: each gets <c>-chardev socket,id=vuN,path=SOCKET</c> and <c>-device DEVICE,chardev=vuN</c>.</summary>
    internal IReadOnlyList<(string Device, string SocketPath)> VhostUserDevices { get; init; } = [];

    /// <summary>Further raw <c>-device</c> values (e.g. <c>pvpanic-pci</c>, <c>i6300esb</c>).</summary>
    internal IReadOnlyList<string> Devices { get; init; } = [];

    /// <summary>Further raw QEMU arguments (e.g. <c>-action</c>, <c>panic=exit-failure</c>).</summary>
    internal IReadOnlyList<string> ExtraArguments { get; init; } = [];

    /// <summary>Whether to open a QMP socket and collect its events (<see cref="QemuRun.QmpEvents"/>).</summary>
    internal bool Qmp { get; init; }

    internal int MemoryMiB { get; init; } = 512;

    /// <summary>The number of vCPUs (<c>-smp</c>); TCG runs each on its own host thread.</summary>
    internal int Cpus { get; init; } = 1;

    /// <summary>Whether a reset ends the run (<c>-no-reboot</c>, the default); false lets the VM reboot, for tests of a host that resets it.</summary>
    internal bool NoReboot { get; init; } = true;

    /// <summary>The QEMU binary; null for Debian 12's QEMU 7.2 (<see cref="KernelPrerequisites.Qemu"/>), <see cref="KernelPrerequisites.Qemu11"/> for the ID-35 front end.</summary>
    internal string? QemuBinary { get; init; }

    /// <summary>The machine type (<c>pc</c>, <c>q35</c>, <c>microvm</c>); guest RAM is always the shared memfd.</summary>
    internal string Machine { get; init; } = "pc";

    /// <summary>Wall-clock limit for the whole run; QEMU is killed by PID when it is exceeded. Boots take 2-4 s under TCG.</summary>
    internal TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);
}
