using Microsoft.Extensions.Logging;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Transport.Tests.Mmio;

[TestFixture]
public sealed class MmioTransportContractTests : TransportContractTests
{
    private protected override ITransportDriver CreateDriver(FakeDevice device, GuestMemory memory, RecordingInterruptSink sink, ILogger? logger = null) =>
        new MmioTestDriver(new VirtioMmioTransport(device, memory, sink, logger: logger), sink);

    private protected override ITransportDriver Restore(byte[] snapshot, FakeDevice device, GuestMemory memory, RecordingInterruptSink sink, out SnapshotStatus status)
    {
        var transport = new VirtioMmioTransport(device, memory, sink);
        status = transport.RestoreState(snapshot);
        return new MmioTestDriver(transport, sink);
    }
}
