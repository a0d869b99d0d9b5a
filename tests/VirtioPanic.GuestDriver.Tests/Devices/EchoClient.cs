using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.GuestDriver.Virtio;

namespace VirtioPanic.GuestDriver.Tests.Devices;

// Guest code for the echo queue: a pool of request/response buffer pairs, one per ring entry.
// Each request carries a unique sequence number; a completion is checked byte for byte and its
// sequence number recorded, so a lost or doubled completion shows up in the counts.
internal sealed class EchoClient
{
    private readonly GuestKernel _guest;
    private readonly GuestVirtqueue _queue;
    private readonly int _size;
    private readonly ulong[] _requests;
    private readonly ulong[] _responses;
    private readonly uint[] _sequenceOfSlot;
    private readonly Stack<int> _freeSlots = new();
    private uint _nextSequence;

    internal EchoClient(GuestKernel guest, GuestVirtqueue queue, int size = 32, int slots = 0)
    {
        _guest = guest;
        _queue = queue;
        _size = size;
        slots = slots == 0 ? queue.Size : slots;
        _requests = new ulong[slots];
        _responses = new ulong[slots];
        _sequenceOfSlot = new uint[slots];
        for (int i = slots - 1; i >= 0; i--)
        {
            _requests[i] = guest.AllocateBuffer((ulong)size);
            _responses[i] = guest.AllocateBuffer((ulong)size);
            _freeSlots.Push(i);
        }
    }

    internal List<uint> Completed { get; } = [];

    internal int Mismatches { get; private set; }

    internal int InFlight => _requests.Length - _freeSlots.Count;

    internal bool Indirect { get; set; }

    // Posts as many requests as fit (at most `max`), then kicks. Returns how many were posted.
    internal int Post(int max, bool kick = true)
    {
        int posted = 0;
        byte[] payload = new byte[_size];
        while (posted < max && _freeSlots.Count > 0)
        {
            int slot = _freeSlots.Peek();
            uint sequence = _nextSequence;
            for (int i = 0; i < _size; i++)
            {
                payload[i] = (byte)(sequence * 31 + i);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(payload, sequence);
            _guest.WriteMemory(_requests[slot], payload);
            _guest.WriteMemory(_responses[slot], new byte[_size]);
            DriverBuffer[] chain = [new(_requests[slot], (uint)_size, false), new(_responses[slot], (uint)_size, true)];
            bool added = Indirect ? _queue.TryAddIndirect(chain, slot) : _queue.TryAdd(chain, slot);
            if (!added)
            {
                break;
            }

            _freeSlots.Pop();
            _sequenceOfSlot[slot] = sequence;
            _nextSequence++;
            posted++;
        }

        if (kick)
        {
            _queue.Kick();
        }

        return posted;
    }

    // Reaps everything used now. Returns how many.
    internal int Reap()
    {
        int reaped = 0;
        while (_queue.TryGetUsed(out UsedBuffer used, out object? token))
        {
            Complete(used, (int)token!);
            reaped++;
        }

        return reaped;
    }

    // Runs `count` requests to completion, keeping the ring full, sleeping on interrupts.
    internal void RunToCompletion(int count, TimeSpan timeout)
    {
        int target = Completed.Count + count;
        int toPost = count;
        while (Completed.Count < target)
        {
            toPost -= Post(toPost);
            if (Reap() == 0)
            {
                if (!_queue.WaitForUsed(timeout, out UsedBuffer used, out object? token))
                {
                    throw new TimeoutException($"echo: no completion within {timeout} ({Completed.Count}/{target} done)");
                }

                Complete(used, (int)token!);
            }
        }
    }

    // Waits until nothing is in flight.
    internal void Drain(TimeSpan timeout)
    {
        while (InFlight > 0)
        {
            if (Reap() == 0)
            {
                if (!_queue.WaitForUsed(timeout, out UsedBuffer used, out object? token))
                {
                    throw new TimeoutException($"echo: {InFlight} requests never completed");
                }

                Complete(used, (int)token!);
            }
        }
    }

    private void Complete(UsedBuffer used, int slot)
    {
        byte[] request = _guest.ReadMemory(_requests[slot], _size);
        byte[] response = _guest.ReadMemory(_responses[slot], _size);
        if (used.Length != (uint)_size || !request.AsSpan().SequenceEqual(response) || BinaryPrimitives.ReadUInt32LittleEndian(response) != _sequenceOfSlot[slot])
        {
            Mismatches++;
        }

        Completed.Add(_sequenceOfSlot[slot]);
        _freeSlots.Push(slot);
    }
}
