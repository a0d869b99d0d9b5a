using System.Collections;

namespace VirtioPanic.Hosting.Policy;

// The immutable, value-equal list behind DevicePolicy's escalation properties: DevicePolicy is a
// record, so two policies with the same steps (one bound from configuration, one written in code)
// must compare equal, and a caller's array must not change the policy after it was set.
internal sealed class StepList<T> : IReadOnlyList<T>, IEquatable<StepList<T>>
    where T : struct, IEquatable<T>
{
    private readonly T[] _items;

    private StepList(T[] items) => _items = items;

    internal static StepList<T> Empty { get; } = new([]);

    public int Count => _items.Length;

    public T this[int index] => _items[index];

    // A copy of the caller's steps; null is no steps.
    internal static StepList<T> From(IEnumerable<T>? steps)
    {
        if (steps is null)
        {
            return Empty;
        }

        if (steps is StepList<T> list)
        {
            return list;
        }

        T[] copy = [.. steps];
        return copy.Length == 0 ? Empty : new StepList<T>(copy);
    }

    public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)_items).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => _items.GetEnumerator();

    public bool Equals(StepList<T>? other) => other is not null && _items.AsSpan().SequenceEqual(other._items);

    public override bool Equals(object? obj) => obj is StepList<T> other && Equals(other);

    public override int GetHashCode()
    {
        var hash = default(HashCode);
        foreach (T item in _items)
        {
            hash.Add(item);
        }

        return hash.ToHashCode();
    }

    public override string ToString() => string.Join("; ", _items);
}
