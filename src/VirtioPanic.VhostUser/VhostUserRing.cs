using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using VirtioPanic.VhostUser.Interop;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.VhostUser;

// What the front end told us about one ring (SET_VRING_NUM/ADDR/BASE/KICK/CALL/ERR/ENABLE), the
// ring's state (vhost-user.rst, "Ring states": stopped → started on SET_VRING_KICK, stopped again
// by GET_VRING_BASE; enabled/disabled by SET_VRING_ENABLE), and the device-side Virtqueue it
// drives.
//
// Threading: everything except the call and err descriptors belongs to the event loop's thread. The
// call/err descriptors are also used by device threads (SignalUsedBuffers, SetNeedsReset) while
// the session may replace them (QEMU sends a new call fd several times), so both are swapped and
// used under _notifyLock: a device never writes to a descriptor number that was just closed and
// perhaps reused for something else.
internal sealed class VhostUserRing
{
    private static readonly byte[] s_one = CreateOne();

    private readonly Lock _notifyLock = new();
    private SafeFileHandle? _call;
    private SafeFileHandle? _err;
    private long _callsSignalled;

    internal VhostUserRing(int index, ushort maxSize)
    {
        Index = index;
        Queue = new Virtqueue(maxSize);
    }

    internal int Index { get; }

    internal Virtqueue Queue { get; }

    internal ushort Num { get; set; }

    internal bool HasAddresses { get; set; }

    internal ulong DescriptorUserAddress { get; set; }

    internal ulong UsedUserAddress { get; set; }

    internal ulong AvailUserAddress { get; set; }

    // SET_VRING_BASE's value. Split ring: the next available index. Packed ring: bits 0-14 the
    // next available index, bit 15 its wrap counter, bits 16-30 the next used index, bit 31 its
    // wrap counter (QEMU's encoding; a value with bits 16-31 clear means nothing outstanding).
    internal uint Base { get; set; }

    // Where the ring stood when it stopped while the device kept its session (VhostUserSession
    // .Rings.cs, "Suspension"): size, the three addresses and the base it reported. Null when
    // it was not live then. Touched by the event loop thread only.
    internal StoppedRing? StoppedAt { get; set; }

    internal SafeFileHandle? Kick { get; private set; }

    // The kick eventfd's registration on the event loop (VhostUserSession.SyncKicks): its token
    // (0: not watched) and the descriptor number it was registered with. Loop thread only; the
    // session removes the registration before Kick is replaced or closed.
    internal ulong KickToken { get; set; }

    internal int KickFd { get; set; } = -1;

    // The front end's kick descriptor is not one epoll can watch; cleared by a new SET_VRING_KICK.
    internal bool KickUnwatchable { get; set; }

    // A kick arrived while the session had unread messages; served once they are read
    // (the kick eventfd is edge-triggered, so no second event comes for it). Loop thread only.
    internal bool KickDeferred { get; set; }

    internal bool Enabled { get; set; }

    // The ring was started: the Virtqueue is activated on the current memory table.
    internal bool Live { get; set; }

    // The ring could not be started (bad addresses, bad base): it stays stopped until the front
    // end reconfigures it.
    internal bool Failed { get; set; }

    internal long CallsSignalled => Interlocked.Read(ref _callsSignalled);

    internal bool HasCall
    {
        get
        {
            lock (_notifyLock)
            {
                return _call is not null;
            }
        }
    }

    internal void SetKick(SafeFileHandle? kick)
    {
        Kick?.Dispose();
        Kick = kick;
    }

    internal void SetCall(SafeFileHandle? call)
    {
        SafeFileHandle? old;
        lock (_notifyLock)
        {
            old = _call;
            _call = call;
        }

        old?.Dispose();
    }

    internal void SetErr(SafeFileHandle? err)
    {
        SafeFileHandle? old;
        lock (_notifyLock)
        {
            old = _err;
            _err = err;
        }

        old?.Dispose();
    }

    // Used-buffer notification: always to the most recent call descriptor. A full eventfd counter
    // (EAGAIN) still means "signalled", so the result only reports whether a descriptor exists.
    internal bool SignalCall()
    {
        lock (_notifyLock)
        {
            if (_call is null || _call.IsClosed)
            {
                return false;
            }

            _ = LinuxIo.Write((int)_call.DangerousGetHandle(), s_one);
            Interlocked.Increment(ref _callsSignalled);
            return true;
        }
    }

    internal bool SignalErr()
    {
        lock (_notifyLock)
        {
            if (_err is null || _err.IsClosed)
            {
                return false;
            }

            _ = LinuxIo.Write((int)_err.DangerousGetHandle(), s_one);
            return true;
        }
    }

    // Back to the state of a fresh connection: no descriptors, no configuration. The queue must
    // already be stopped (the session resets the device first).
    internal void Clear()
    {
        Queue.Reset();
        SetKick(null);
        KickUnwatchable = false;
        KickDeferred = false;
        SetCall(null);
        SetErr(null);
        Num = 0;
        HasAddresses = false;
        DescriptorUserAddress = 0;
        UsedUserAddress = 0;
        AvailUserAddress = 0;
        Base = 0;
        Enabled = false;
        Live = false;
        Failed = false;
    }

    private static byte[] CreateOne()
    {
        byte[] one = new byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(one, 1);
        return one;
    }
}

// A ring's configuration and position at a stop that suspended the device.
internal readonly record struct StoppedRing(ushort Num, ulong Descriptors, ulong Avail, ulong Used, uint Base);

