using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport.Tests.Fakes;

// The guest driver's view of a transport, as the contract tests need it: what Linux's
// virtio_pci_modern and virtio_mmio do, reduced to register accesses.
internal interface ITransportDriver
{
    RecordingInterruptSink Sink { get; }

    DeviceStatus ReadStatus();

    void WriteStatus(DeviceStatus status);

    uint ReadDeviceFeatures(uint window);

    void WriteDriverFeatures(uint window, uint value);

    uint ReadDriverFeatures(uint window);

    void SelectQueue(uint queue);

    ushort ReadQueueSizeMax();

    void WriteQueueSize(ushort size);

    void WriteQueueAddresses(ulong descriptors, ulong driver, ulong device);

    void WriteQueueReady(uint value);

    bool ReadQueueReady();

    void WriteQueueReset();

    uint ReadQueueReset();

    void Kick(int queue);

    uint ReadConfigGeneration();

    uint ReadConfig32(uint offset);

    void WriteConfig32(uint offset, uint value);

    // Reads and acknowledges the interrupt cause (PCI: ISR read-to-clear; MMIO: InterruptStatus + InterruptACK).
    uint TakeInterrupt();

    byte[] Save();

    // Restores a snapshot into this transport (the host's RestoreState).
    SnapshotStatus Restore(ReadOnlySpan<byte> snapshot);

    long InvalidAccessCount { get; }

    long DroppedNotifications { get; }

    long DeviceFaults { get; }

    void HostReset();
}
