namespace VirtioPanic.Fuzz;

// A broken promise of the code under test: thrown, so that it escapes the target as a finding.
internal sealed class InvariantViolationException : Exception
{
    public InvariantViolationException()
    {
    }

    public InvariantViolationException(string message)
        : base(message)
    {
    }

    public InvariantViolationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

internal static class Check
{
    internal static void That(bool condition, string what)
    {
        if (!condition)
        {
            throw new InvariantViolationException(what);
        }
    }

    // For messages worth formatting only when the check fails: throw Check.Violation($"...").
    internal static InvariantViolationException Violation(string what) => new(what);
}
