namespace VirtioPanic.GuestDriver.Machine;

/// <summary>x86 port I/O, used for the PCI configuration mechanism #1 (ports 0xCF8 and 0xCFC).</summary>
/// <remarks>Thread-safe.</remarks>
public interface IPortIoBus
{
    /// <summary>An <c>in</c> of <c>data.Length</c> bytes (1, 2 or 4) from <paramref name="port"/>; all ones when nothing answers.</summary>
    /// <param name="port">I/O port.</param>
    /// <param name="data">Receives the bytes.</param>
    void In(ushort port, Span<byte> data);

    /// <summary>An <c>out</c> of <c>data.Length</c> bytes (1, 2 or 4) to <paramref name="port"/>.</summary>
    /// <param name="port">I/O port.</param>
    /// <param name="data">The bytes written.</param>
    void Out(ushort port, ReadOnlySpan<byte> data);
}
