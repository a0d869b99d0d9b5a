using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.VhostUser;

// Ring life cycle and device activation.
//
// A ring starts when it has a size, addresses, a kick descriptor, memory to live in, features,
// and (once VHOST_USER_F_PROTOCOL_FEATURES is negotiated) SET_VRING_ENABLE 1. The device is
// activated when the first rings start; so that a multi-queue device sees all its queues at
// Activate, activation waits until every ring that has a kick descriptor can start (QEMU sends
// NUM/BASE/ADDR/KICK for every ring before it enables any). A ring that starts later is announced
// with a Notify.
//
// Suspension. GET_VRING_BASE comes both when the VM stops (QEMU stops every ring before its QMP
// STOP event; `cont` restarts them with SET_VRING_BASE set to what we reported) and when the
// guest's driver resets the device (the rings then restart from 0 once the driver sets the device
// up again), and nothing in the protocol tells the two apart. So the first ring stop of an active
// device suspends it (IVirtioDevice.Suspend: processing stops, its session and held buffers are
// kept, the watchdog's clock stops), and every ring's position is recorded as it stops. When the
// rings start again, the session continues (TryResume) only if every ring that was live restarts
// with the same size, addresses and base, at least one of them had moved past its initial
// position (a driver that set up fresh rings restarts them at 0), and the features are the same;
// anything else was a driver reset after all, and the device is reset before it is activated
// afresh. A device that does not keep sessions (Suspend returns false) was reset at the stop, as
// before. The front end going away, RESET_OWNER or a new memory table while active reset it too.
// A host that knows the VM's run state may end a suspension earlier by resetting the device
// itself (WatchdogDevice.SetSuspendObserver); TryResume then declines and the restart activates.
internal sealed partial class VhostUserSession
{
    private bool _suspended;               // the device keeps its session across stopped rings
    private ulong _suspendedFeatures;      // VirtioFeatures when it was suspended

    private bool CanStart(VhostUserRing ring) =>
        !ring.Live && !ring.Failed && ring.Kick is not null && ring.HasAddresses && ring.Num != 0 &&
        IsEnabled(ring);

    private void UpdateRings()
    {
        if (_memory is null || !_featuresAcked || _needsReset)
        {
            return;
        }

        if (_context is null)
        {
            bool any = false;
            foreach (VhostUserRing ring in _rings)
            {
                if (ring.Kick is null || ring.Failed || ring.Live)
                {
                    continue;
                }

                if (!CanStart(ring))
                {
                    return;
                }

                any = true;
            }

            if (!any)
            {
                return;
            }

            foreach (VhostUserRing ring in _rings)
            {
                if (CanStart(ring))
                {
                    _ = TryStartRing(ring);
                }
            }

            ActivateDevice();
            return;
        }

        foreach (VhostUserRing ring in _rings)
        {
            if (CanStart(ring) && TryStartRing(ring))
            {
                NotifyDevice(ring);
            }
        }
    }

    private void ActivateDevice()
    {
        bool anyLive = false;
        foreach (VhostUserRing ring in _rings)
        {
            anyLive |= ring.Live;
        }

        if (!anyLive)
        {
            return;
        }

        var context = new VhostUserDeviceContext(this, _memory!.Memory, VirtioFeatures, _rings);
        _context = context;
        bool resumed = false;
        try
        {
            if (_suspended)
            {
                resumed = EndSuspension(context);
            }

            if (!resumed)
            {
                _device.Activate(context);
            }
        }
        catch (Exception e)
        {
            VhostUserMetrics.DeviceFault(nameof(IVirtioDevice.Activate));
            VhostUserLog.DeviceFault(_logger, e, _device.DeviceId, nameof(IVirtioDevice.Activate));
            OnNeedsReset();
            return;
        }

        if (resumed)
        {
            _statistics.OnDeviceResumed();
            VhostUserLog.DeviceResumed(_logger, _device.DeviceId);
        }
        else
        {
            _statistics.OnDeviceActivated();
            VhostUserLog.DeviceActivated(_logger, _device.DeviceId, VirtioFeatures);
        }

        // Buffers the driver published before the rings started would otherwise wait for a kick
        // that already happened.
        foreach (VhostUserRing ring in _rings)
        {
            NotifyDevice(ring);
        }
    }

    private string? TranslateRing(VhostUserRing ring, out ulong descriptors, out ulong avail, out ulong used)
    {
        descriptors = avail = used = 0;
        VhostUserMemoryTable memory = _memory!;
        ushort size = ring.Num;
        if (!memory.TryTranslateUserAddress(ring.DescriptorUserAddress, SplitRingLayout.DescriptorTableSize(size), out descriptors))
        {
            return $"ring {ring.Index} descriptor table 0x{ring.DescriptorUserAddress:x} is not inside one memory region";
        }

        if (!memory.TryTranslateUserAddress(ring.AvailUserAddress, SplitRingLayout.AvailRingSize(size), out avail))
        {
            return $"ring {ring.Index} available ring 0x{ring.AvailUserAddress:x} is not inside one memory region";
        }

        if (!memory.TryTranslateUserAddress(ring.UsedUserAddress, SplitRingLayout.UsedRingSize(size), out used))
        {
            return $"ring {ring.Index} used ring 0x{ring.UsedUserAddress:x} is not inside one memory region";
        }

        return null;
    }

    // A packed ring: 16-byte descriptors, and a 4-byte event suppression area each for the driver
    // ("avail" address) and the device ("used" address).
    private string? TranslatePackedRing(VhostUserRing ring, out ulong descriptors, out ulong driverArea, out ulong deviceArea)
    {
        descriptors = driverArea = deviceArea = 0;
        VhostUserMemoryTable memory = _memory!;
        const ulong EventSuppressionSize = 4;
        if (!memory.TryTranslateUserAddress(ring.DescriptorUserAddress, 16UL * ring.Num, out descriptors))
        {
            return $"ring {ring.Index} descriptor ring 0x{ring.DescriptorUserAddress:x} is not inside one memory region";
        }

        if (!memory.TryTranslateUserAddress(ring.AvailUserAddress, EventSuppressionSize, out driverArea))
        {
            return $"ring {ring.Index} driver area 0x{ring.AvailUserAddress:x} is not inside one memory region";
        }

        return memory.TryTranslateUserAddress(ring.UsedUserAddress, EventSuppressionSize, out deviceArea)
            ? null
            : $"ring {ring.Index} device area 0x{ring.UsedUserAddress:x} is not inside one memory region";
    }

    private bool TryStartPackedRing(VhostUserRing ring)
    {
        string? error = TranslatePackedRing(ring, out ulong descriptors, out ulong driverArea, out ulong deviceArea);
        if (error is null)
        {
            uint value = ring.Base;
            ushort nextAvail = (ushort)(value & 0x7fff);
            bool availWrap = (value & 0x8000) != 0;
            // No used half (bits 16-31 clear): nothing is outstanding, used = avail.
            bool hasUsed = (value >> 16) != 0;
            var state = new VirtqueueState
            {
                Format = VirtqueueFormat.Packed,
                Features = Virtio.Device.VirtioFeatures.ToQueueFeatures(VirtioFeatures),
                Ready = true,
                Config = new VirtqueueConfig(ring.Num, descriptors, driverArea, deviceArea),
                NextAvail = nextAvail,
                AvailWrapCounter = availWrap,
                NextUsed = hasUsed ? (ushort)((value >> 16) & 0x7fff) : nextAvail,
                UsedWrapCounter = hasUsed ? (value & 0x8000_0000) != 0 : availWrap,
            };
            error = RestoreRing(ring, state);
        }

        return CompleteStart(ring, error, (ushort)(ring.Base & 0x7fff), descriptors, driverArea, deviceArea);
    }

    private bool TryStartRing(VhostUserRing ring)
    {
        if (PackedRings)
        {
            return TryStartPackedRing(ring);
        }

        string? error = TranslateRing(ring, out ulong descriptors, out ulong avail, out ulong used);
        GuestMemory memory = _memory!.Memory;
        ushort usedIndex = 0;
        if (error is null && !memory.TryReadUInt16(used + SplitRingLayout.UsedIndex, out usedIndex))
        {
            error = $"ring {ring.Index} used index is unreadable";
        }

        if (error is null && ring.Base > ushort.MaxValue)
        {
            error = $"ring {ring.Index} base {ring.Base} does not fit a split ring index";
        }

        if (error is null)
        {
            // The front end owns the ring position across stops (SET_VRING_BASE = next available
            // entry); the used index is whatever the ring in guest memory says. RestoreState
            // validates the pair like a fresh activation.
            var state = new VirtqueueState
            {
                Format = VirtqueueFormat.Split,
                Features = Virtio.Device.VirtioFeatures.ToQueueFeatures(VirtioFeatures),
                Ready = true,
                Config = new VirtqueueConfig(ring.Num, descriptors, avail, used),
                NextAvail = (ushort)ring.Base,
                NextUsed = usedIndex,
            };
            error = RestoreRing(ring, state);
        }

        return CompleteStart(ring, error, (ushort)ring.Base, descriptors, avail, used);
    }

    // Activates the ring's Virtqueue at the position the front end gave; RestoreState validates it
    // like a fresh activation. Returns the reason on failure.
    private string? RestoreRing(VhostUserRing ring, in VirtqueueState state)
    {
        VirtqueueStatus status = ring.Queue.RestoreState(_memory!.Memory, state);
        return status == VirtqueueStatus.Ok ? null : $"ring {ring.Index}: {status}";
    }

    // Both formats end a start the same way: a failed ring stays stopped (until the front end
    // reconfigures it) and the front end's err eventfd is signalled; a started one is live.
    private bool CompleteStart(VhostUserRing ring, string? error, ushort nextAvail, ulong descriptors, ulong driverArea, ulong deviceArea)
    {
        if (error is not null)
        {
            ring.Failed = true;
            VhostUserLog.RingStartFailed(_logger, ring.Index, error);
            _ = ring.SignalErr();
            return false;
        }

        ring.Live = true;
        VhostUserLog.RingStarted(_logger, ring.Index, ring.Num, nextAvail, descriptors, driverArea, deviceArea);
        return true;
    }

    // GET_VRING_BASE: stop the ring and remember where it stopped. The first stop of an active
    // device suspends it (see "Suspension" above), while every ring is still usable.
    private void StopRing(VhostUserRing ring)
    {
        if (ring.Live)
        {
            if (_context is not null)
            {
                SuspendDevice();
            }

            SaveBase(ring);
            ring.StoppedAt = _suspended
                ? new StoppedRing(ring.Num, ring.DescriptorUserAddress, ring.AvailUserAddress, ring.UsedUserAddress, ring.Base)
                : null;
            ring.Queue.Reset();
            ring.Live = false;
            VhostUserLog.RingStopped(_logger, ring.Index, (ushort)(ring.Base & 0xffff));
        }

        // Stopped until the next SET_VRING_KICK (vhost-user.rst, "Ring states").
        DetachKick(ring);
        ring.SetKick(null);

        foreach (VhostUserRing other in _rings)
        {
            if (other.Live)
            {
                return;
            }
        }

        if (!_suspended)
        {
            StopDevice("all rings stopped");
        }
    }

    // The first ring stop of an active device: keep its session if it can, else it has reset.
    private void SuspendDevice()
    {
        VhostUserDeviceContext context = _context!;
        bool kept;
        try
        {
            kept = _device.Suspend();
        }
        catch (Exception e)
        {
            VhostUserMetrics.DeviceFault(nameof(IVirtioDevice.Suspend));
            VhostUserLog.DeviceFault(_logger, e, _device.DeviceId, nameof(IVirtioDevice.Suspend));
            kept = false;
            ResetDevice();
        }

        context.Close();
        _context = null;
        foreach (VhostUserRing each in _rings)
        {
            each.StoppedAt = null;
        }

        if (kept)
        {
            _suspended = true;
            _suspendedFeatures = VirtioFeatures;
            _statistics.OnDeviceSuspended();
            VhostUserLog.DeviceSuspended(_logger, _device.DeviceId);
        }
        else
        {
            VhostUserLog.DeviceReset(_logger, _device.DeviceId, "rings stopped");
        }
    }

    // The rings start again after a suspension: continue the session when they restarted where
    // they stopped, otherwise reset the device (it was a driver reset). Returns true when resumed.
    private bool EndSuspension(VhostUserDeviceContext context)
    {
        _suspended = false;
        bool same = VirtioFeatures == _suspendedFeatures;
        bool moved = false;
        foreach (VhostUserRing ring in _rings)
        {
            StoppedRing? stopped = ring.StoppedAt;
            ring.StoppedAt = null;
            if (stopped is not { } at)
            {
                same &= !ring.Live;
                continue;
            }

            same &= ring.Live && at == new StoppedRing(ring.Num, ring.DescriptorUserAddress, ring.AvailUserAddress, ring.UsedUserAddress, ring.Base);
            moved |= PackedRings ? (at.Base & 0x7fff_7fff) != 0 || (at.Base & 0x8000) == 0 : at.Base != 0;
        }

        if (same && moved && _device.TryResume(context))
        {
            return true;
        }

        ResetDevice();
        VhostUserLog.DeviceReset(_logger, _device.DeviceId, same && moved ? "the device ended its suspension" : "rings restarted elsewhere than they stopped: a driver reset");
        return false;
    }

    private void ResetDevice()
    {
        try
        {
            _device.Reset();
        }
        catch (Exception e)
        {
            VhostUserMetrics.DeviceFault(nameof(IVirtioDevice.Reset));
            VhostUserLog.DeviceFault(_logger, e, _device.DeviceId, nameof(IVirtioDevice.Reset));
        }
    }

    private void SaveBase(VhostUserRing ring)
    {
        VirtqueueState saved = ring.Queue.SaveState();
        ring.Base = saved.Format == VirtqueueFormat.Packed
            ? saved.NextAvail | (saved.AvailWrapCounter ? 0x8000u : 0) | ((uint)saved.NextUsed << 16) | (saved.UsedWrapCounter ? 0x8000_0000u : 0)
            : saved.NextAvail;
    }

    // Resets the device (if active) and stops every ring, keeping each ring's position so that it
    // can restart where it stopped.
    private void StopDevice(string reason)
    {
        VhostUserDeviceContext? context = _context;
        if (context is not null || _suspended)
        {
            context?.Close();
            ResetDevice();
            _context = null;
            _suspended = false;
            VhostUserLog.DeviceReset(_logger, _device.DeviceId, reason);
        }

        foreach (VhostUserRing ring in _rings)
        {
            ring.StoppedAt = null;
            if (ring.Live)
            {
                SaveBase(ring);
                ring.Queue.Reset();
                ring.Live = false;
            }
        }

        _needsReset = false;
    }
}
