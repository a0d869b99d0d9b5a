namespace VirtioPanic.Host.Demo;

// Delivered to the demo guest's vCPU at its next checkpoint: an NMI.
internal sealed class GuestNmiException : Exception
{
    public GuestNmiException()
        : base("NMI")
    {
    }
}
