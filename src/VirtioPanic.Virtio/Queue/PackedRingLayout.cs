namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// Sizes, alignments and field values of the packed ring (virtio 1.2 §2.8.10 "Event Suppression
/// Structure Format", §2.8.10.1 "Structure Size and Alignment", §2.8.13, §2.8.14).
/// </summary>
/// <remarks>
/// <code>
/// Descriptor Ring            align 16  16*N bytes   pvirtq_desc[N]             driver and device write
/// Driver Event Suppression   align 4   4 bytes      le16 off_wrap @0, le16 flags @2   driver writes (controls used-buffer notifications)
/// Device Event Suppression   align 4   4 bytes      le16 off_wrap @0, le16 flags @2   device writes (controls available-buffer notifications)
/// </code>
/// N is any value from 1 to 32768; it need not be a power of two.
/// </remarks>
public static class PackedRingLayout
{
    /// <summary>Largest packed queue size.</summary>
    public const ushort MaxQueueSize = 32768;

    /// <summary>Required alignment of the descriptor ring.</summary>
    public const uint DescriptorRingAlignment = 16;

    /// <summary>Required alignment of both event suppression structures.</summary>
    public const uint EventSuppressionAlignment = 4;

    /// <summary>Size of an event suppression structure.</summary>
    public const uint EventSuppressionSize = 4;

    /// <summary>Offset of <c>off_wrap</c> (bits 0–14 descriptor offset, bit 15 wrap counter).</summary>
    public const uint EventOffWrap = 0;

    /// <summary>Offset of <c>flags</c> (bits 0–1: ENABLE, DISABLE, DESC).</summary>
    public const uint EventFlags = 2;

    /// <summary>RING_EVENT_FLAGS_ENABLE: notify on every event.</summary>
    public const ushort EventFlagsEnable = 0x0;

    /// <summary>RING_EVENT_FLAGS_DISABLE: never notify.</summary>
    public const ushort EventFlagsDisable = 0x1;

    /// <summary>RING_EVENT_FLAGS_DESC: notify when the descriptor at <c>off_wrap</c> is reached (needs VIRTIO_F_EVENT_IDX).</summary>
    public const ushort EventFlagsDesc = 0x2;

    /// <summary>Bit of <c>off_wrap</c> holding the wrap counter.</summary>
    public const int WrapCounterBit = 15;

    /// <summary>Bytes of the descriptor ring for a queue of <paramref name="queueSize"/> entries.</summary>
    /// <param name="queueSize">Queue size N.</param>
    public static uint DescriptorRingSize(ushort queueSize) => (uint)PackedDescriptor.Size * queueSize;

    /// <summary>
    /// Whether the descriptor at (<paramref name="eventOffset"/>, <paramref name="eventWrap"/>)
    /// lies among the <paramref name="advanced"/> slots just before position
    /// (<paramref name="newOffset"/>, <paramref name="newWrap"/>) — i.e. whether moving forward by
    /// that many slots crossed the event position (the packed form of <c>vring_need_event</c>).
    /// </summary>
    /// <param name="eventOffset">Event descriptor offset (from <c>off_wrap</c>).</param>
    /// <param name="eventWrap">Event wrap counter (from <c>off_wrap</c>).</param>
    /// <param name="newOffset">Ring offset after the batch.</param>
    /// <param name="newWrap">Wrap counter after the batch.</param>
    /// <param name="advanced">Slots moved in the batch (at most the queue size).</param>
    /// <param name="queueSize">Queue size N.</param>
    public static bool NeedsEvent(ushort eventOffset, bool eventWrap, ushort newOffset, bool newWrap, int advanced, ushort queueSize)
    {
        if (eventOffset >= queueSize || advanced <= 0)
        {
            return false;
        }

        // How many slots behind the new position the event descriptor is: in the current pass
        // when its wrap counter matches, in the previous pass otherwise.
        int distance;
        if (eventWrap == newWrap)
        {
            if (eventOffset >= newOffset)
            {
                return false;   // not written yet in this pass
            }

            distance = newOffset - eventOffset;
        }
        else
        {
            if (eventOffset < newOffset)
            {
                return false;   // more than a full ring ago
            }

            distance = newOffset + queueSize - eventOffset;
        }

        return distance <= advanced;
    }
}
