namespace VirtioPanic.Host.Demo;

// Delivered to the demo guest's vCPU at its next checkpoint: the ACPI power button.
internal sealed class GuestPowerButtonException : Exception
{
    public GuestPowerButtonException()
        : base("power button")
    {
    }
}
