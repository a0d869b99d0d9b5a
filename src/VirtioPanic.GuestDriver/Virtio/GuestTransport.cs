using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Virtio;

// The transport half of the guest's virtio core (Linux virtio_pci_modern_dev / virtio_mmio):
// register accesses only. GuestVirtioDevice holds the transport-independent sequence.
internal abstract class GuestTransport
{
    internal const ushort NoVector = 0xFFFF;

    internal abstract VirtioTransportKind Kind { get; }

    internal abstract string Location { get; }

    internal abstract uint DeviceId { get; }

    internal abstract byte ReadStatus();

    internal abstract void WriteStatus(byte status);

    internal abstract ulong ReadDeviceFeatures();

    internal abstract void WriteDriverFeatures(ulong features);

    internal abstract ushort ReadQueueMaxSize(int queue);

    internal abstract bool IsQueueEnabled(int queue);

    // Programs size, areas and (PCI) the MSI-X vector, then enables the queue. False when the
    // vector did not stick (the caller falls back to another interrupt mode).
    internal abstract bool ActivateQueue(int queue, VirtqueueConfig config, ushort vector);

    internal abstract void Notify(int queue);

    internal abstract uint ReadConfigGeneration();

    internal abstract void ReadConfigRaw(uint offset, Span<byte> data);

    internal abstract void WriteConfigRaw(uint offset, ReadOnlySpan<byte> data);

    // Sets up the interrupt path; returns the mode obtained. onQueue(i) is vring_interrupt for
    // queue i, onAllQueues every queue's, onConfig the configuration-change handler.
    internal abstract VirtioInterruptMode SetUpInterrupts(GuestCpu cpu, int queueCount, VirtioInterruptMode preference, Func<int, bool> onQueue, Func<bool> onAllQueues, Func<bool> onConfig);

    // The MSI-X vector queue slot `position` (0-based among the set-up queues) should use.
    internal abstract ushort QueueVector(int position);

    internal abstract void TearDownInterrupts(GuestCpu cpu);

    // Raw register accesses in the transport's own numbering (misbehaving-guest mode).
    internal abstract void RawRead(ulong offset, Span<byte> data);

    internal abstract void RawWrite(ulong offset, ReadOnlySpan<byte> data);

    // Offsets of a few registers for misbehaving-guest mode.
    internal abstract ulong StatusRegister { get; }

    internal abstract ulong FeatureRegister { get; }
}
