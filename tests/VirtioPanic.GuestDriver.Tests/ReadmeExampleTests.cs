using Microsoft.Extensions.Time.Testing;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.GuestDriver.Tests.Devices;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Tests;

// The ten-line guest-driver test the README shows, kept compiling and passing here.
public sealed class ReadmeExampleTests
{
    // README-SNIPPET: README.md
    [Test]
    public void EchoDevice_OverPci_EchoesARequest()
    {
        using var machine = new TestMachine();
        machine.AddPciDevice(new EchoDevice());
        using GuestKernel guest = GuestKernel.Boot(machine);
        GuestVirtioDevice echo = guest.FindVirtioDevice(EchoDevice.Id);
        ulong request = guest.AllocateBuffer(4), response = guest.AllocateBuffer(4);
        guest.WriteMemory(request, [1, 2, 3, 4]);
        UsedBuffer? used = guest.Run(() => echo.Initialize(new VirtioDriverOptions()) == VirtioInitResult.Ok
            ? echo.Queue(0).Submit([new(request, 4, false), new(response, 4, true)], TimeSpan.FromSeconds(1)) : null);
        Assert.That(used?.Length, Is.EqualTo(4));
        Assert.That(guest.ReadMemory(response, 4), Is.EqualTo(new byte[] { 1, 2, 3, 4 }));
    }
    // END-README-SNIPPET

    [Test]
    public void PackageReadme_GuestDriverExample_SubmitsAndTheDeviceAnswers()
    {
        var fakeTime = new FakeTimeProvider();
        var myDevice = new EchoDevice();
        const ulong myFeatures = EchoDevice.FeatureEcho;

        // README-SNIPPET: src/VirtioPanic.GuestDriver/README.md
        using var machine = new TestMachine(new TestMachineOptions { Clock = fakeTime });
        machine.AddPciDevice(myDevice);                       // or AddMmioDevice
        using GuestKernel guest = GuestKernel.Boot(machine);  // vCPU thread, firmware BAR assignment, bus scans
        GuestVirtioDevice device = guest.FindVirtioDevice(myDevice.DeviceId);
        ulong request = guest.AllocateBuffer(16), response = guest.AllocateBuffer(16);
        guest.Run(() => device.Initialize(new VirtioDriverOptions { Features = myFeatures, Queues = [new QueueSetup(0)] }));
        UsedBuffer? used = guest.Run(() => device.Queue(0).Submit([new(request, 16, false), new(response, 16, true)], TimeSpan.FromSeconds(1)));
        // END-README-SNIPPET

        Assert.That((used?.Length, myDevice.AcceptedFeatures & ((1UL << 24) - 1)), Is.EqualTo(((uint?)16, myFeatures)), "echoed; the device-specific feature negotiated (bits 0-23)");
    }

    [Test]
    public void VirtioPackageReadme_NotifyHandler_EchoesEachRequest()
    {
        var myDevice = new ReadmeEchoDevice();
        using var machine = new TestMachine();
        machine.AddPciDevice(myDevice);
        using GuestKernel guest = GuestKernel.Boot(machine);
        GuestVirtioDevice echo = guest.FindVirtioDevice(ReadmeEchoDevice.Id);
        ulong request = guest.AllocateBuffer(8), response = guest.AllocateBuffer(8);
        guest.WriteMemory(request, [9, 8, 7, 6, 5, 4, 3, 2]);

        UsedBuffer?[] used = guest.Run<UsedBuffer?[]>(() => echo.Initialize(new VirtioDriverOptions()) == VirtioInitResult.Ok
            ? [echo.Queue(0).Submit([new(request, 8, false), new(response, 8, true)], TimeSpan.FromSeconds(5)), echo.Queue(0).Submit([new(request, 3, false), new(response, 8, true)], TimeSpan.FromSeconds(5))]
            : []);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(used.Select(u => u?.Length), Is.EqualTo(new uint?[] { 8, 3 }), "each request echoed, its length reported");
            Assert.That(guest.ReadMemory(response, 8), Is.EqualTo(new byte[] { 9, 8, 7, 6, 5, 4, 3, 2 }));
        }
    }

    // The smallest IVirtioDevice around the Virtio package readme's queue handler.
    private sealed class ReadmeEchoDevice : IVirtioDevice
    {
        internal const uint Id = 61;
        private IVirtioDeviceContext? _context;

        public uint DeviceId => Id;

        public ulong DeviceFeatures => 0;

        public int QueueCount => 1;

        public int ConfigSize => 0;

        public ushort GetMaxQueueSize(int queueIndex) => 64;

        public void ReadConfig(uint offset, Span<byte> data) => data.Clear();

        public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
        {
        }

        public bool AcceptFeatures(ulong features) => true;

        public void Activate(IVirtioDeviceContext context) => _context = context;

        public void ResetQueue(int queueIndex)
        {
        }

        public void Quiesce()
        {
        }

        public void Reset() => _context = null;

        // README-SNIPPET: src/VirtioPanic.Virtio/README.md
        public void Notify(int queueIndex)
        {
            Virtqueue queue = _context!.GetQueue(queueIndex);
            Span<byte> buffer = stackalloc byte[256];
            while (queue.TryPopChain(out DescriptorChain chain) == VirtqueueStatus.Ok)
            {
                int length = chain.CopyFromReadable(buffer[..(int)Math.Min(chain.ReadableLength, 256u)]);
                int written = chain.CopyToWritable(buffer[..length]);
                queue.AddUsed(chain.Token, (uint)written);
            }

            if (queue.Status is not (VirtqueueStatus.Ok or VirtqueueStatus.Empty))
            {
                _context.SetNeedsReset(); // a broken ring: the driver must reset the device
            }

            if (queue.FlushUsed())
            {
                _context.SignalUsedBuffers(queueIndex);
            }
        }
        // END-README-SNIPPET
    }
}
