using System.Buffers.Binary;
using System.Reflection;
using System.Reflection.Emit;
using VirtioPanic.GuestDriver.Watchdog;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.GuestDriver.Tests.Watchdog;

// The harness driver's half of the COMMITTED pairing (WDT-DRV-9, device side WDT-DEV-36): the
// record body first, then state = COMMITTED with a release store. On x86-64 stores are not
// reordered with stores, so no run can show a missing release; this checks the code: Commit writes
// the body, then calls StoreCommitted, which stores through GuestMemory.TryStoreUInt32Release.
public sealed class RecordCommitOrderingTests
{
    [Test]
    [Category("Conformance")]
    public void WDT_DRV_9_CommittedIsStoredWithReleaseSemantics_AfterTheBody()
    {
        List<MethodBase> commit = Calls("Commit");
        List<MethodBase> store = Calls("StoreCommitted");

        int lastBodyWrite = commit.FindLastIndex(m => m.DeclaringType == typeof(GuestMemory) && m.Name == nameof(GuestMemory.TryWrite));
        int committed = commit.FindIndex(m => m.Name == "StoreCommitted");
        Assert.Multiple(() =>
        {
            Assert.That(lastBodyWrite, Is.GreaterThanOrEqualTo(0), "the body is written");
            Assert.That(committed, Is.GreaterThan(lastBodyWrite), "COMMITTED is stored after the body");
            Assert.That(
                store.Where(m => m.DeclaringType == typeof(GuestMemory) && (m.Name.StartsWith("TryWrite", StringComparison.Ordinal) || m.Name.StartsWith("TryStore", StringComparison.Ordinal))).Select(m => m.Name).FirstOrDefault(),
                Is.EqualTo(nameof(GuestMemory.TryStoreUInt32Release)),
                "its first store to guest memory is a release store");
        });
    }

    private static List<MethodBase> Calls(string name)
    {
        MethodInfo method = typeof(WatchdogDriver).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Instance)
            ?? throw new InvalidOperationException($"WatchdogDriver.{name} not found");
        byte[] il = method.GetMethodBody()!.GetILAsByteArray()!;
        var calls = new List<MethodBase>();
        for (int i = 0; i + 5 <= il.Length; i++)
        {
            if (il[i] != OpCodes.Call.Value && il[i] != OpCodes.Callvirt.Value)
            {
                continue;
            }

            int token = BinaryPrimitives.ReadInt32LittleEndian(il.AsSpan(i + 1));
            if ((token >> 24) is not (0x06 or 0x0A or 0x2B))
            {
                continue;
            }

            try
            {
                if (method.Module.ResolveMethod(token) is MethodBase callee)
                {
                    calls.Add(callee);
                    i += 4;
                }
            }
            catch (ArgumentException)
            {
                // Operand bytes that only looked like a call.
            }
        }

        return calls;
    }
}
