namespace VirtioPanic.Hosting.Dumps;

/// <summary>
/// The x86-64 general registers of a vCPU in the order of Linux's <c>struct user_regs_struct</c>
/// (<c>arch/x86/include/asm/user_64.h</c>), which is the <c>pr_reg</c> array of an ELF core's
/// NT_PRSTATUS note: the index of each register in <see cref="ElfCoreCpu.Registers"/>.
/// </summary>
public enum Amd64Register
{
    /// <summary>r15.</summary>
    R15,

    /// <summary>r14.</summary>
    R14,

    /// <summary>r13.</summary>
    R13,

    /// <summary>r12.</summary>
    R12,

    /// <summary>rbp.</summary>
    Rbp,

    /// <summary>rbx.</summary>
    Rbx,

    /// <summary>r11.</summary>
    R11,

    /// <summary>r10.</summary>
    R10,

    /// <summary>r9.</summary>
    R9,

    /// <summary>r8.</summary>
    R8,

    /// <summary>rax.</summary>
    Rax,

    /// <summary>rcx.</summary>
    Rcx,

    /// <summary>rdx.</summary>
    Rdx,

    /// <summary>rsi.</summary>
    Rsi,

    /// <summary>rdi.</summary>
    Rdi,

    /// <summary>orig_rax: the system call number on entry (any value for a VM's vCPU; QEMU writes rax).</summary>
    OrigRax,

    /// <summary>rip.</summary>
    Rip,

    /// <summary>cs (the selector).</summary>
    Cs,

    /// <summary>rflags.</summary>
    Rflags,

    /// <summary>rsp.</summary>
    Rsp,

    /// <summary>ss (the selector).</summary>
    Ss,

    /// <summary>The fs segment base.</summary>
    FsBase,

    /// <summary>The gs segment base.</summary>
    GsBase,

    /// <summary>ds (the selector).</summary>
    Ds,

    /// <summary>es (the selector).</summary>
    Es,

    /// <summary>fs (the selector).</summary>
    Fs,

    /// <summary>gs (the selector).</summary>
    Gs,
}
