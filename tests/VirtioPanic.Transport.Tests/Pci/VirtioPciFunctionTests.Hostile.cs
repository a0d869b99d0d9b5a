using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.Transport.Tests.Pci;

// A hostile guest: seeded random accesses of random widths (including odd ones) everywhere the
// function answers. Nothing may throw, and a reset must always bring back a working function.
public sealed partial class VirtioPciFunctionTests
{
    private static readonly int[] s_widths = [0, 1, 2, 3, 4, 5, 6, 7, 8, 16];

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public void RandomAccesses_ConfigSpaceAndEveryBar_NeverThrowAndAFunctionResetRecovers(int seed)
    {
        var random = new Random(seed);
        BringUp();

        for (int i = 0; i < 20_000; i++)
        {
            RandomAccess(random, includeConfigSpace: true);
        }

        Assert.That(_function.InvalidAccessCount, Is.Positive);
        _driver.HostReset();
        _driver.FindCapabilities();
        AssertWorks();
    }

    [TestCase(5)]
    [TestCase(6)]
    public void RandomAccesses_VirtioBarOnly_NeverThrowAndADriverResetRecovers(int seed)
    {
        var random = new Random(seed);
        BringUp();

        for (int i = 0; i < 20_000; i++)
        {
            byte[] data = new byte[s_widths[random.Next(s_widths.Length)]];
            random.NextBytes(data);
            ulong offset = (ulong)random.Next(0, 0x4100);
            if (random.Next(2) == 0)
            {
                _function.ReadBar(0, offset, data);
            }
            else
            {
                _function.WriteBar(0, offset, data);
            }
        }

        // The driver's way out: reset the device through the status field.
        _driver.WriteStatus(0);
        Assert.That(_driver.ReadStatus(), Is.EqualTo((DeviceStatus)0));
        AssertWorks();
    }

    private void RandomAccess(Random random, bool includeConfigSpace)
    {
        byte[] data = new byte[s_widths[random.Next(s_widths.Length)]];
        random.NextBytes(data);
        bool write = random.Next(2) == 0;
        switch (random.Next(includeConfigSpace ? 4 : 3))
        {
            case 0:
                ulong barOffset = random.Next(4) == 0 ? (ulong)random.NextInt64() : (ulong)random.Next(0, 0x5000);
                int bar = random.Next(8) == 0 ? random.Next(-1, 7) : random.Next(2) * 2;
                if (write)
                {
                    _function.WriteBar(bar, barOffset, data);
                }
                else
                {
                    _function.ReadBar(bar, barOffset, data);
                }

                break;
            case 1:
                ulong address = random.Next(2) == 0
                    ? PciTestDriver.VirtioBarAddress + (ulong)random.Next(0, 0x4100)
                    : PciTestDriver.MsixBarAddress + (ulong)random.Next(0, 0x2100);
                if (write)
                {
                    _function.TryWriteMemory(address, data);
                }
                else
                {
                    _function.TryReadMemory(address, data);
                }

                break;
            case 2:
                _function.NotifyQueue(random.Next(-2, 4));
                break;
            default:
                uint offset = random.Next(8) == 0 ? (uint)random.Next() : (uint)random.Next(0, 0x110);
                if (write)
                {
                    _function.WriteConfig(offset, data);
                }
                else
                {
                    _function.ReadConfig(offset, data);
                }

                break;
        }
    }

    [Test]
    public void RandomAccesses_FromManyThreads_NeverThrow()
    {
        BringUp();
        var tasks = new Task[4];
        for (int t = 0; t < tasks.Length; t++)
        {
            int seed = 100 + t;
            tasks[t] = Task.Run(() =>
            {
                var random = new Random(seed);
                for (int i = 0; i < 5_000; i++)
                {
                    RandomAccess(random, includeConfigSpace: seed % 2 == 0);
                }
            });
        }

        Assert.That(() => Task.WaitAll(tasks), Throws.Nothing);
        _driver.HostReset();
        _driver.FindCapabilities();
        AssertWorks();
        Assert.That(_function.GetBarMappings(), Has.All.Matches<PciBarMapping>(m => m.IsEnabled));
    }
}
