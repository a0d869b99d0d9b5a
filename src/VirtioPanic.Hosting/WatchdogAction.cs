using System.ComponentModel;

namespace VirtioPanic.Hosting;

/// <summary>
/// What the host does to the VM when its watchdog expires: libvirt's <c>&lt;watchdog action=…&gt;</c>
/// vocabulary (the same as QEMU's <c>-action watchdog=…</c> minus <c>debug</c>, plus <c>dump</c>).
/// In configuration write <c>reset</c>, <c>shutdown</c>, <c>poweroff</c>, <c>pause</c>, <c>dump</c>,
/// <c>inject-nmi</c> or <c>none</c>; the member names are accepted too.
/// </summary>
[TypeConverter(typeof(PolicyActionConverter<WatchdogAction>))]
public enum WatchdogAction
{
    /// <summary><c>reset</c>: reset the VM; the next boot reads boot reason WATCHDOG (the default).</summary>
    Reset,

    /// <summary><c>shutdown</c>: ask the guest to shut down gracefully (needs a responsive guest).</summary>
    Shutdown,

    /// <summary><c>poweroff</c>: power the VM off.</summary>
    Poweroff,

    /// <summary><c>pause</c>: pause the VM; a management Continue resumes it.</summary>
    Pause,

    /// <summary><c>dump</c>: dump guest memory to a file; the guest keeps running.</summary>
    Dump,

    /// <summary><c>inject-nmi</c>: inject a non-maskable interrupt so the guest can panic and dump itself.</summary>
    InjectNmi,

    /// <summary><c>none</c>: record the expiry only.</summary>
    None,
}
