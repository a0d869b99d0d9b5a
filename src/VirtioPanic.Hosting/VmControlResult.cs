namespace VirtioPanic.Hosting;

/// <summary>What a <see cref="IVmControl"/> call reports: success, or failure with a reason.</summary>
/// <param name="Succeeded">Whether the operation was carried out.</param>
/// <param name="Error">Why it failed; null on success.</param>
public readonly record struct VmControlResult(bool Succeeded, string? Error)
{
    /// <summary>The operation was carried out.</summary>
    public static VmControlResult Success => new(true, null);

    /// <summary>The operation failed.</summary>
    /// <param name="error">Why, in words an operator can act on.</param>
    /// <returns>A failed result.</returns>
    public static VmControlResult Failure(string error) => new(false, error);
}
