using System.Diagnostics.CodeAnalysis;

namespace VirtioPanic.Virtio;

// Exceptions here mean a host programming error (a bad offset computed by engine code, a misuse
// of the API); guest-supplied data never reaches a throw. Keeping the throws out of line keeps
// the hot paths small enough to inline.
internal static class ThrowHelper
{
    [DoesNotReturn]
    internal static void ThrowArgumentOutOfRange(string paramName) =>
        throw new ArgumentOutOfRangeException(paramName);

    [DoesNotReturn]
    internal static void ThrowSliceTooLongForSpan() =>
        throw new InvalidOperationException("A guest memory slice longer than 2 GiB cannot be viewed as one span; narrow it with Slice first.");

    [DoesNotReturn]
    internal static void ThrowInvalidOperation(string message) =>
        throw new InvalidOperationException(message);
}
