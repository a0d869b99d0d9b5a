using System.ComponentModel;

namespace VirtioPanic.Hosting;

/// <summary>
/// What the host does to the VM when its guest reports a panic: libvirt's <c>&lt;on_crash&gt;</c>
/// vocabulary, plus <see cref="LogOnly"/>. In configuration write the libvirt spelling
/// (<c>destroy</c>, <c>restart</c>, <c>preserve</c>, <c>coredump-destroy</c>, <c>coredump-restart</c>,
/// <c>log-only</c>); the member names are accepted too.
/// </summary>
[TypeConverter(typeof(PolicyActionConverter<PanicAction>))]
public enum PanicAction
{
    /// <summary><c>destroy</c>: power the VM off (libvirt's default).</summary>
    Destroy,

    /// <summary><c>restart</c>: reset the VM; the next boot reads boot reason PANIC.</summary>
    Restart,

    /// <summary><c>preserve</c>: pause the VM and keep it for inspection; a management Continue resumes it.</summary>
    Preserve,

    /// <summary><c>coredump-destroy</c>: dump guest memory to a file, then power off.</summary>
    CoredumpDestroy,

    /// <summary><c>coredump-restart</c>: dump guest memory to a file, then reset (boot reason PANIC).</summary>
    CoredumpRestart,

    /// <summary><c>log-only</c>: record the panic and leave the guest running (it may dump and reboot itself).</summary>
    LogOnly,
}
