namespace VirtioPanic.Device;

/// <summary>Why the host last reset the VM, as the guest reads it from <c>boot_reason</c> (spec §6.7).</summary>
public enum WatchdogBootReason : uint
{
    /// <summary>Power-on, or a reset the host did not attribute.</summary>
    None = 0,

    /// <summary>The host reset the VM because this watchdog expired.</summary>
    Watchdog = 1,

    /// <summary>The host reset the VM as its policy for a reported guest panic.</summary>
    Panic = 2,

    /// <summary>The host reset the VM for another reason (a management request).</summary>
    Host = 3,
}
