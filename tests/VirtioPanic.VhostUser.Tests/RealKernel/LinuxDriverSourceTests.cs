using System.Text.RegularExpressions;

namespace VirtioPanic.VhostUser.Tests.RealKernel;

// Buffer ownership in the reference Linux driver (src/guest/linux/virtio_wdt.c), checked on its
// source: a buffer made available is the device's until it comes back used, so no request path
// may write into the heartbeat, request or response buffer before it has checked that the last
// request is no longer in flight (after a timeout the device still owns them). A real kernel
// cannot show the difference on x86 (the late answer lands in the same bytes either way), so the
// order of the statements is what is checked.
internal sealed partial class LinuxDriverSourceTests
{
    private static string Source => File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot(), "src", "guest", "linux", "virtio_wdt.c"));

    [TestCase("virtio_wdt_heartbeat", "vw->heartbeat[")]
    [TestCase("virtio_wdt_control", "vw->req")]
    [TestCase("virtio_wdt_control", "vw->resp")]
    public void RequestPath_ChecksInFlightBeforeTouchingItsBuffers(string function, string buffer)
    {
        string body = FunctionBody(Source, function);
        int check = body.IndexOf("virtio_wdt_request_idle(vw)", StringComparison.Ordinal);
        int firstTouch = body.IndexOf(buffer, StringComparison.Ordinal);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(check, Is.GreaterThanOrEqualTo(0), $"{function} checks that no request is in flight");
            Assert.That(firstTouch, Is.GreaterThan(check), $"{function} touches {buffer} only after that check");
        }
    }

    [Test]
    public void RequestIdle_ReadsTheFlagUnderTheQueueLockWithTheRequestLockHeld()
    {
        string body = FunctionBody(Source, "virtio_wdt_request_idle");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(body, Does.Contain("lockdep_assert_held(&vw->request_lock)"));
            Assert.That(body, Does.Match(@"spin_lock_irqsave\(&vw->watchdog_vq_lock[^;]*;\s*idle = !vw->request_in_flight;\s*spin_unlock_irqrestore"));
        }
    }

    [Test]
    public void CommitRecord_WriteBarrierBeforeCommitted_CommentsWhatItPairsWith()
    {
        string body = FunctionBody(Source, "virtio_wdt_commit_record");
        Match barrier = BarrierWithComment().Match(body);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(barrier.Success, Is.True, "a comment right before wmb(), and state = COMMITTED right after it");
            Assert.That(barrier.Groups["comment"].Value, Does.Contain("acquire"), "the comment names the device's acquire load it pairs with");
        }
    }

    // The text between the braces of `static ... name(...)\n{ ... \n}` (kernel style: the body
    // opens on its own line and closes with a brace in column 0).
    private static string FunctionBody(string source, string name)
    {
        Match match = Regex.Match(source, $@"^static [^\n;]*\b{Regex.Escape(name)}\([^)]*\)\s*\n\{{(?<body>.*?)\n\}}", RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.That(match.Success, Is.True, $"{name} not found in virtio_wdt.c");
        return match.Groups["body"].Value;
    }

    [GeneratedRegex(@"/\*(?<comment>(?:(?!\*/).)*)\*/\s*wmb\(\);\s*WRITE_ONCE\(rec->state, cpu_to_le32\(VIRTIO_WDT_RECORD_COMMITTED\)\)", RegexOptions.Singleline)]
    private static partial Regex BarrierWithComment();
}
