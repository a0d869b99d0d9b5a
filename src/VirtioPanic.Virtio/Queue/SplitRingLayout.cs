namespace VirtioPanic.Virtio.Queue;

/// <summary>
/// Sizes, alignments and field offsets of the three split-ring areas (virtio 1.2 §2.7
/// "Split Virtqueues", table of alignment and size; §2.7.6 available ring; §2.7.8 used ring).
/// </summary>
/// <remarks>
/// <code>
/// Descriptor Table  align 16  16*N bytes         virtq_desc[N]
/// Available Ring    align 2   6 + 2*N bytes      le16 flags @0, le16 idx @2, le16 ring[N] @4, le16 used_event @4+2N
/// Used Ring         align 4   6 + 8*N bytes      le16 flags @0, le16 idx @2, virtq_used_elem ring[N] @4, le16 avail_event @4+8N
/// </code>
/// </remarks>
public static class SplitRingLayout
{
    /// <summary>Largest split queue size (virtio 1.2 §2.7: "Queue Size ... maximum 32768").</summary>
    public const ushort MaxQueueSize = 32768;

    /// <summary>Required alignment of the descriptor table.</summary>
    public const uint DescriptorTableAlignment = 16;

    /// <summary>Required alignment of the available ring.</summary>
    public const uint AvailRingAlignment = 2;

    /// <summary>Required alignment of the used ring.</summary>
    public const uint UsedRingAlignment = 4;

    /// <summary>Offset of <c>avail.flags</c>.</summary>
    public const uint AvailFlags = 0;

    /// <summary>Offset of <c>avail.idx</c>.</summary>
    public const uint AvailIndex = 2;

    /// <summary>Offset of <c>avail.ring[0]</c>.</summary>
    public const uint AvailRing = 4;

    /// <summary>Offset of <c>used.flags</c>.</summary>
    public const uint UsedFlags = 0;

    /// <summary>Offset of <c>used.idx</c>.</summary>
    public const uint UsedIndex = 2;

    /// <summary>Offset of <c>used.ring[0]</c>.</summary>
    public const uint UsedRing = 4;

    /// <summary>VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks not to be interrupted (ignored with EVENT_IDX).</summary>
    public const ushort AvailFlagNoInterrupt = 0x1;

    /// <summary>VIRTQ_USED_F_NO_NOTIFY: the device asks not to be kicked (must be 0 with EVENT_IDX).</summary>
    public const ushort UsedFlagNoNotify = 0x1;

    /// <summary>Bytes of the descriptor table for a queue of <paramref name="queueSize"/> entries.</summary>
    /// <param name="queueSize">Queue size N.</param>
    public static uint DescriptorTableSize(ushort queueSize) => (uint)VirtqDescriptor.Size * queueSize;

    /// <summary>Bytes of the available ring, including <c>used_event</c>.</summary>
    /// <param name="queueSize">Queue size N.</param>
    public static uint AvailRingSize(ushort queueSize) => 6u + (2u * queueSize);

    /// <summary>Bytes of the used ring, including <c>avail_event</c>.</summary>
    /// <param name="queueSize">Queue size N.</param>
    public static uint UsedRingSize(ushort queueSize) => 6u + ((uint)VirtqUsedElement.Size * queueSize);

    /// <summary>Offset of <c>used_event</c> in the available ring.</summary>
    /// <param name="queueSize">Queue size N.</param>
    public static uint UsedEventOffset(ushort queueSize) => AvailRing + (2u * queueSize);

    /// <summary>Offset of <c>avail_event</c> in the used ring.</summary>
    /// <param name="queueSize">Queue size N.</param>
    public static uint AvailEventOffset(ushort queueSize) => UsedRing + ((uint)VirtqUsedElement.Size * queueSize);

    /// <summary>
    /// The event-index test (virtio 1.2 Appendix A <c>vring_need_event</c>, §2.7.7.2): whether
    /// moving an index from <paramref name="oldIndex"/> to <paramref name="newIndex"/> crossed
    /// <paramref name="eventIndex"/>, in wrapping 16-bit arithmetic.
    /// </summary>
    /// <param name="eventIndex">The other side's <c>used_event</c> / <c>avail_event</c>.</param>
    /// <param name="newIndex">Index after the batch.</param>
    /// <param name="oldIndex">Index before the batch.</param>
    public static bool NeedsEvent(ushort eventIndex, ushort newIndex, ushort oldIndex) =>
        (ushort)(newIndex - eventIndex - 1) < (ushort)(newIndex - oldIndex);
}
