using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

/// <summary>Why the policy service is calling <see cref="IVmControl"/>: the device, the event that led to it, and the policy action.</summary>
public sealed record VmActionContext
{
    /// <summary>The watchdog device whose event triggered the call (identifies the VM to the hypervisor).</summary>
    public required string DeviceId { get; init; }

    /// <summary>The operation requested.</summary>
    public required VmOperation Operation { get; init; }

    /// <summary>The policy action being carried out, in libvirt spelling (for example <c>coredump-restart</c>, <c>inject-nmi</c>, <c>continue</c>).</summary>
    public required string PolicyAction { get; init; }

    /// <summary>The device event that led to the call; null for a management request (Continue) or a deadline.</summary>
    public WatchdogEvent? Trigger { get; init; }

    /// <summary>
    /// For <see cref="VmOperation.Reset"/>: the boot reason the policy service already set on the
    /// device. A hypervisor that calls <see cref="WatchdogDevice.OnVmReset"/> while resetting should pass this value.
    /// </summary>
    public WatchdogBootReason BootReason { get; init; }
}
