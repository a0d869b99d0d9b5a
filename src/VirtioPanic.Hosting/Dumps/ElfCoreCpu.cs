namespace VirtioPanic.Hosting.Dumps;

/// <summary>One vCPU of the dumped VM: an NT_PRSTATUS note in the core file.</summary>
public sealed class ElfCoreCpu
{
    /// <summary>The number of general registers an NT_PRSTATUS note of x86-64 carries (27).</summary>
    public const int RegisterCount = 27;

    /// <summary>Creates the description of one vCPU.</summary>
    /// <param name="index">The vCPU's index, from 0; the note's <c>pr_pid</c> is <paramref name="index"/> + 1, as QEMU writes it (a debugger shows it as the thread id).</param>
    /// <param name="registers">
    /// The general registers in <see cref="Amd64Register"/> order (exactly <see cref="RegisterCount"/>
    /// values), or null when the hypervisor does not know them: the note is then written with zeros,
    /// so that the debugger still lists the vCPU.
    /// </param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is negative or <see cref="int.MaxValue"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="registers"/> does not hold exactly <see cref="RegisterCount"/> values.</exception>
    public ElfCoreCpu(int index, IReadOnlyList<ulong>? registers = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfEqual(index, int.MaxValue);
        if (registers is not null && registers.Count != RegisterCount)
        {
            throw new ArgumentException($"An x86-64 NT_PRSTATUS note carries exactly {RegisterCount} general registers (got {registers.Count}).", nameof(registers));
        }

        Index = index;
        // A private copy: the writer reads it later, on another thread, and the caller may reuse its array.
        Registers = registers is null ? null : [.. registers];
    }

    /// <summary>The vCPU's index, from 0.</summary>
    public int Index { get; }

    /// <summary>The general registers in <see cref="Amd64Register"/> order, or null when unknown.</summary>
    public IReadOnlyList<ulong>? Registers { get; }
}
