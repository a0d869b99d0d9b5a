namespace VirtioPanic.GuestDriver.Kernel;

/// <summary>How the guest kernel boots.</summary>
public sealed class GuestKernelOptions
{
    /// <summary>The PCI configuration mechanism.</summary>
    /// <remarks>Defaults to <see cref="PciConfigMechanism.Auto"/>.</remarks>
    public PciConfigMechanism PciConfigMechanism { get; init; } = PciConfigMechanism.Auto;

    /// <summary>
    /// Real time after which a host request or a guest wait is declared hung and fails with a
    /// <see cref="TimeoutException"/>. A safety net, never a timing result: tests time things on the machine clock.
    /// </summary>
    /// <remarks>Defaults to 30 seconds.</remarks>
    public TimeSpan HangTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
