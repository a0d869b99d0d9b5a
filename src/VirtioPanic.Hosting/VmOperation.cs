namespace VirtioPanic.Hosting;

/// <summary>One call the policy service makes on <see cref="IVmControl"/>.</summary>
public enum VmOperation
{
    /// <summary><see cref="IVmControl.PauseAsync"/>.</summary>
    Pause,

    /// <summary><see cref="IVmControl.ResumeAsync"/>.</summary>
    Resume,

    /// <summary><see cref="IVmControl.ResetAsync"/>.</summary>
    Reset,

    /// <summary><see cref="IVmControl.PowerOffAsync"/>.</summary>
    PowerOff,

    /// <summary><see cref="IVmControl.RequestShutdownAsync"/>.</summary>
    RequestShutdown,

    /// <summary><see cref="IVmControl.DumpGuestMemoryAsync"/>.</summary>
    DumpGuestMemory,

    /// <summary><see cref="IVmControl.InjectNmiAsync"/>.</summary>
    InjectNmi,
}
