using System.Diagnostics;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Device;

// Per-queue registers, addressed through the queue selector as both transports do (virtio 1.2
// §4.1.4.3 queue_select and the fields after it; §4.2.2 QueueSel and the registers it selects).
// An out-of-range selector reads zeros and changes nothing.
public sealed partial class VirtioDeviceController
{
    /// <summary>queue_select / QueueSel as last written (any value; out-of-range values select no queue).</summary>
    public uint QueueSelect
    {
        get
        {
            lock (_lock)
            {
                return _queueSelect;
            }
        }
    }

    /// <summary>The selected queue's index, or -1 when the selector names no queue.</summary>
    public int SelectedQueueIndex
    {
        get
        {
            lock (_lock)
            {
                return _queueSelect < (uint)_queues.Length ? (int)_queueSelect : -1;
            }
        }
    }

    /// <summary>Selects the queue the queue registers address.</summary>
    /// <param name="value">Queue index as written (16 bits on PCI, 32 on MMIO).</param>
    public void WriteQueueSelect(uint value)
    {
        lock (_lock)
        {
            _queueSelect = value;
        }
    }

    /// <summary>The selected queue's maximum size (MMIO QueueSizeMax); 0 when no queue is selected.</summary>
    public ushort ReadQueueSizeMax()
    {
        lock (_lock)
        {
            return SelectedUnsynchronized()?.MaxSize ?? 0;
        }
    }

    /// <summary>The selected queue's size (PCI queue_size): the maximum after reset, or what the driver wrote; 0 when no queue is selected.</summary>
    public ushort ReadQueueSize()
    {
        lock (_lock)
        {
            return SelectedUnsynchronized()?.Size ?? 0;
        }
    }

    /// <summary>
    /// Sets the selected queue's size. The value is recorded as written and validated when the
    /// queue is enabled; an obviously invalid one (0, above the maximum, or not a power of two
    /// for a split ring) is reported.
    /// </summary>
    /// <param name="value">The size the driver chose.</param>
    public RegisterWriteResult WriteQueueSize(ushort value)
    {
        lock (_lock)
        {
            QueueRegisters? queue = SelectedUnsynchronized();
            if (queue is null)
            {
                return RegisterWriteResult.NoSuchQueue;
            }

            if (queue.Enabled)
            {
                return RegisterWriteResult.QueueEnabled;
            }

            queue.Size = value;
            bool packed = (_negotiatedFeatures & VirtioFeatures.RingPacked) != 0;
            bool valid = value != 0 && value <= queue.MaxSize && (packed || (value & (value - 1)) == 0);
            return valid ? RegisterWriteResult.Accepted : RegisterWriteResult.InvalidValue;
        }
    }

    /// <summary>One of the selected queue's area addresses; 0 when no queue is selected.</summary>
    /// <param name="area">Which area.</param>
    public ulong ReadQueueAddress(VirtqueueArea area)
    {
        lock (_lock)
        {
            return SelectedUnsynchronized()?.GetAddress(area) ?? 0;
        }
    }

    /// <summary>
    /// Writes one 32-bit half of a selected queue's area address; the halves are independent
    /// (virtio 1.2 §4.1.3.2 device MUST allow independent access to the halves).
    /// </summary>
    /// <param name="area">Which area.</param>
    /// <param name="high">True for bits 32–63, false for bits 0–31.</param>
    /// <param name="value">The half's value.</param>
    public RegisterWriteResult WriteQueueAddress(VirtqueueArea area, bool high, uint value)
    {
        lock (_lock)
        {
            QueueRegisters? queue = SelectedUnsynchronized();
            if (queue is null)
            {
                return RegisterWriteResult.NoSuchQueue;
            }

            if (queue.Enabled)
            {
                return RegisterWriteResult.QueueEnabled;
            }

            ulong current = queue.GetAddress(area);
            ulong next = high
                ? (current & 0x0000_0000_FFFF_FFFFUL) | ((ulong)value << 32)
                : (current & 0xFFFF_FFFF_0000_0000UL) | value;
            queue.SetAddress(area, next);
            return RegisterWriteResult.Accepted;
        }
    }

    /// <summary>Whether the selected queue is enabled (queue_enable / QueueReady); false when no queue is selected.</summary>
    public bool ReadQueueEnable()
    {
        lock (_lock)
        {
            return SelectedUnsynchronized()?.Enabled ?? false;
        }
    }

    /// <summary>
    /// Enables the selected queue: validates its size and areas against guest memory once and
    /// latches them into the device-side queue. An invalid configuration, or an enable before
    /// FEATURES_OK, sets DEVICE_NEEDS_RESET and leaves the queue disabled.
    /// </summary>
    /// <remarks>A queue enabled while the device is already live (after a per-queue reset) is
    /// picked up by the device at the driver's next kick for it; <see cref="IVirtioDevice"/> has no
    /// separate "queue enabled" call.</remarks>
    /// <param name="queueStatus">The queue engine's verdict on the configuration.</param>
    public RegisterWriteResult EnableQueue(out VirtqueueStatus queueStatus)
    {
        RegisterWriteResult result;
        lock (_lock)
        {
            AssertInvariants();
            result = EnableQueueUnsynchronized(out queueStatus);
        }

        AfterControl();
        return result;
    }

    /// <summary>
    /// Disables the selected queue (virtio-mmio QueueReady written with 0): the device stops using
    /// it and its registers return to their reset values, as a per-queue reset does.
    /// </summary>
    public RegisterWriteResult DisableQueue()
    {
        lock (_lock)
        {
            QueueRegisters? queue = SelectedUnsynchronized();
            if (queue is null)
            {
                return RegisterWriteResult.NoSuchQueue;
            }

            if (queue.Enabled)
            {
                ResetQueueUnsynchronized((int)_queueSelect);
            }
        }

        AfterControl();
        return RegisterWriteResult.Accepted;
    }

    /// <summary>
    /// queue_reset / QueueReset written with 1 (VIRTIO_F_RING_RESET, virtio 1.2 §2.6.1): the device
    /// stops using the selected queue, its ring state and registers return to their defaults, and
    /// both queue_reset and queue_enable read 0 when this returns (§4.1.4.3.1, §4.2.2.1). The reset
    /// is synchronous, so queue_reset never reads 1.
    /// </summary>
    /// <param name="value">The value written; only 1 means "reset".</param>
    public RegisterWriteResult WriteQueueReset(uint value)
    {
        lock (_lock)
        {
            QueueRegisters? queue = SelectedUnsynchronized();
            if (queue is null)
            {
                return RegisterWriteResult.NoSuchQueue;
            }

            if ((_negotiatedFeatures & VirtioFeatures.RingReset) == 0)
            {
                return RegisterWriteResult.FeatureNotNegotiated;
            }

            if (value != 1)
            {
                return RegisterWriteResult.InvalidValue;
            }

            ResetQueueUnsynchronized((int)_queueSelect);
        }

        AfterControl();
        return RegisterWriteResult.Accepted;
    }

    private QueueRegisters? SelectedUnsynchronized()
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        return _queueSelect < (uint)_queues.Length ? _queues[_queueSelect] : null;
    }

    private RegisterWriteResult EnableQueueUnsynchronized(out VirtqueueStatus queueStatus)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        QueueRegisters? queue = SelectedUnsynchronized();
        if (queue is null)
        {
            queueStatus = VirtqueueStatus.NotReady;
            return RegisterWriteResult.NoSuchQueue;
        }

        if (queue.Enabled)
        {
            queueStatus = VirtqueueStatus.Ok;
            return RegisterWriteResult.Accepted;
        }

        // The ring format and features are only known once negotiation finished (§3.1.1 step 7
        // comes after FEATURES_OK).
        if ((Volatile.Read(ref _status) & (int)DeviceStatus.FeaturesOk) == 0)
        {
            queueStatus = VirtqueueStatus.NotReady;
            SetNeedsResetUnsynchronized();
            return RegisterWriteResult.OutOfSequence;
        }

        queueStatus = queue.Queue.Activate(_memory, queue.Config, VirtioFeatures.ToQueueFeatures(_negotiatedFeatures));
        if (queueStatus != VirtqueueStatus.Ok)
        {
            SetNeedsResetUnsynchronized();
            return RegisterWriteResult.QueueConfigRejected;
        }

        // Release: a kick that observes Enabled also observes the activated queue.
        queue.Enabled = true;
        return RegisterWriteResult.Accepted;
    }

    // §2.6.1.1.1: after a queue reset the device MUST NOT execute requests or notify for the queue
    // and MUST return its state to the defaults.
    private void ResetQueueUnsynchronized(int index)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread);
        QueueRegisters queue = _queues[index];
        queue.Enabled = false;
        WaitForNotifiersUnsynchronized();
        if (_session is not null)
        {
            try
            {
                _device.ResetQueue(index);
            }
            catch (Exception ex)
            {
                ContainFault(nameof(IVirtioDevice.ResetQueue), ex);
                // The queue is reset below regardless; DEVICE_NEEDS_RESET is set.
            }
        }

        queue.Reset();
    }
}
