using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.GuestDriver.Memory;

/// <summary>
/// The guest kernel's page allocator, reduced to what a driver harness needs: aligned bump
/// allocation of guest-physical ranges inside a window of guest memory, zeroed on allocation.
/// </summary>
/// <remarks>Thread-safe. Nothing is ever freed individually; <see cref="Reset"/> releases everything.</remarks>
public sealed class GuestAllocator
{
    private readonly GuestMemory _memory;
    private readonly ulong _start;
    private readonly ulong _end;
    private readonly Lock _lock = new();
    private ulong _next;

    /// <summary>Creates an allocator over [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>).</summary>
    /// <param name="memory">Guest memory the window lives in.</param>
    /// <param name="start">Guest-physical start of the window.</param>
    /// <param name="length">Window length in bytes.</param>
    public GuestAllocator(GuestMemory memory, ulong start, ulong length)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (memory.CheckRange(start, length) != GuestMemoryStatus.Ok)
        {
            throw new ArgumentException("The allocation window must lie inside one guest memory region.");
        }

        _memory = memory;
        _start = start;
        _end = start + length;
        _next = start;
    }

    /// <summary>The guest memory allocations come from.</summary>
    public GuestMemory Memory => _memory;

    /// <summary>Bytes still free in the window (ignoring alignment padding).</summary>
    public ulong Available
    {
        get
        {
            lock (_lock)
            {
                return _end - _next;
            }
        }
    }

    /// <summary>Allocates <paramref name="length"/> zeroed bytes aligned to <paramref name="alignment"/>.</summary>
    /// <param name="length">Bytes to allocate; not zero.</param>
    /// <param name="alignment">A power of two.</param>
    /// <returns>The guest-physical address.</returns>
    /// <exception cref="InvalidOperationException">The window is exhausted.</exception>
    public ulong Allocate(ulong length, ulong alignment = 16)
    {
        if (length == 0 || alignment == 0 || (alignment & (alignment - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), "Length must be non-zero and alignment a power of two.");
        }

        ulong address;
        lock (_lock)
        {
            address = (_next + alignment - 1) & ~(alignment - 1);
            if (address < _next || address > _end || length > _end - address)
            {
                throw new InvalidOperationException($"Guest allocator exhausted: {length} bytes requested, {_end - _next} left.");
            }

            _next = address + length;
        }

        Clear(address, length);
        return address;
    }

    /// <summary>Releases every allocation (the memory is zeroed again as it is handed out).</summary>
    public void Reset()
    {
        lock (_lock)
        {
            _next = _start;
        }
    }

    private void Clear(ulong address, ulong length)
    {
        while (length > 0)
        {
            uint chunk = (uint)Math.Min(length, 1u << 30);
            if (_memory.TryGetSlice(address, chunk, out GuestMemorySlice slice) != GuestMemoryStatus.Ok)
            {
                throw new InvalidOperationException("Allocated range left guest memory.");
            }

            slice.Span.Clear();
            address += chunk;
            length -= chunk;
        }
    }
}
