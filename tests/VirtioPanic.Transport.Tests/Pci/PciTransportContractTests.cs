using Microsoft.Extensions.Logging;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Transport.Tests.Fakes;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Transport.Tests.Pci;

[TestFixture]
public sealed class PciTransportContractTests : TransportContractTests
{
    private protected override ITransportDriver CreateDriver(FakeDevice device, GuestMemory memory, RecordingInterruptSink sink, ILogger? logger = null) =>
        new PciTestDriver(new VirtioPciFunction(device, memory, sink, logger: logger), sink);

    private protected override ITransportDriver Restore(byte[] snapshot, FakeDevice device, GuestMemory memory, RecordingInterruptSink sink, out SnapshotStatus status)
    {
        var function = new VirtioPciFunction(device, memory, sink);
        status = function.RestoreState(snapshot);
        return new PciTestDriver(function, sink, programFirmware: status != SnapshotStatus.Ok);
    }
}
