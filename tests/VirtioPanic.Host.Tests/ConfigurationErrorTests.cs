namespace VirtioPanic.Host.Tests;

// Invalid settings stop the host program before anything starts: exit code 2, one line on stderr
// per mistake (the key, the bad value, what is allowed), no stack trace, nothing on stdout, no
// journal opened.
public sealed class ConfigurationErrorTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);

    [TestCase("Device__DefaultTimeout", "-00:00:01", "Device:DefaultTimeout = '-00:00:01': must be a whole number of milliseconds")]
    [TestCase("Device__DefaultTimeot", "00:00:05", "Device:DefaultTimeot = '00:00:05': unknown key; the keys of Device are:")]
    [TestCase("Device__EventCapacity", "2", "Device:EventCapacity = '2': must be 4 or more")]
    [TestCase("Device__VcpuCount", "1025", "Device:VcpuCount = '1025': must be from 0 (no per-vCPU stall detection) to 1024")]
    [TestCase("Device__VcpuCount", "two", "Device:VcpuCount = 'two': not a whole number; allowed: 0 (no per-vCPU stall detection) to 1024")]
    [TestCase("Device__VcpuStallTimeout", "00:00:00.500", "Device:VcpuStallTimeout = '00:00:00.5000000': must be at least 00:00:01")]
    [TestCase("Demo__Scenario", "foo", "Demo:Scenario = 'foo': allowed: panic, watchdog-stall, crash-kernel, shutdown, panic-storm")]
    [TestCase("Demo__Transport", "usb", "Demo:Transport = 'usb': allowed: pci, mmio")]
    [TestCase("Demo__PetInterval", "0", "Demo:PetInterval = '0': allowed: a time span")]
    [TestCase("Demo__Petz", "3", "Demo:Petz = '3': unknown key")]
    [TestCase("VirtioPanic__Policy__OnPanic", "explode", "'explode' at 'VirtioPanic:Policy:OnPanic'")]
    [TestCase("VirtioPanic__ActionTimeout", "soon", "'VirtioPanic:ActionTimeout' has an invalid value 'soon'")]
    [TestCase("VirtioPanic__Policy__OnPanik", "destroy", "Unknown configuration key 'VirtioPanic:Policy:OnPanik'")]
    public void Demo_BadSetting_ExitsWithOneClearLine(string variable, string value, string expected)
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(directory, ("VIRTIOPANIC_" + variable, value));

        string[] lines = Lines(error);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(2), error + output);
            Assert.That(lines, Has.Length.EqualTo(1), error);
            Assert.That(lines.FirstOrDefault(), Does.StartWith("error: ").And.Contain(expected));
            Assert.That(error + output, Does.Not.Contain("   at "), "no stack trace");
            Assert.That(output, Is.Empty, "nothing started, nothing logged");
            Assert.That(File.Exists(directory.File("journal.jsonl")), Is.False, "the journal was not opened");
        }
    }

    [Test]
    public void Demo_MistakesInThreeSections_AreAllReported_OneLineEach()
    {
        using var directory = new TempDirectory();
        (int code, string output, string error) = Run(
            directory,
            ("VIRTIOPANIC_Device__MaxTimeout", "forever"),
            ("VIRTIOPANIC_Demo__Ring", "round"),
            ("VIRTIOPANIC_VirtioPanic__JournalMaxFiles", "0"));

        string[] lines = Lines(error);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(2), error + output);
            Assert.That(lines, Has.Length.EqualTo(3), error);
            Assert.That(lines, Has.One.Contains("Device:MaxTimeout = 'forever'"));
            Assert.That(lines, Has.One.Contains("Demo:Ring = 'round': allowed: split, packed"));
            Assert.That(lines, Has.One.Contains("VirtioPanic:JournalMaxFiles must be between 1 and 100 (got 0)"));
            Assert.That(error + output, Does.Not.Contain("   at "));
        }
    }

    [Test]
    public void Serve_BadDeviceSetting_ExitsBeforeListening()
    {
        using var directory = new TempDirectory();
        string socket = directory.File("wdt.sock");
        (int code, string output, string error) = Run(directory, [("VIRTIOPANIC_Device__MinTimeout", "-1")], "serve", "--vhost-user", socket);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(2), error + output);
            Assert.That(Lines(error), Is.EqualTo(new[] { "error: Device:MinTimeout = '-1.00:00:00': must be a whole number of milliseconds from 00:00:00.001 to 49.17:02:47.2950000 (4294967295 ms)." }));
            Assert.That(error + output, Does.Not.Contain("   at "));
            Assert.That(File.Exists(socket), Is.False, "never listened");
        }
    }

    [Test]
    public void Help_ShowsTheDefaultsInForce_AndTheLibrarysOwnPanicDefault()
    {
        (int code, string output, string error) = HostProcess.Run(s_limit, null, "--help");
        (int code2, string output2, _) = HostProcess.Run(s_limit, new Dictionary<string, string> { ["VIRTIOPANIC_VirtioPanic__Policy__OnPanic"] = "preserve" }, "--help");
        string flat = Flatten(output), flat2 = Flatten(output2);

        using (Assert.EnterMultipleScope())
        {
            Assert.That((code, code2), Is.EqualTo((0, 0)), error);
            Assert.That(flat, Does.Contain("Default: restart (VirtioPanic:Policy:OnPanic; the library's own default, without that setting, is destroy)"));
            Assert.That(flat, Does.Contain("Default: reset (VirtioPanic:Policy:OnWatchdog"));
            Assert.That(flat, Does.Contain("Default: panic (Demo:Scenario)").And.Contain("Default: pci (Demo:Transport)").And.Contain("Default: split (Demo:Ring)"));
            Assert.That(flat, Does.Contain("2 the settings are invalid"));
            Assert.That(flat2, Does.Contain("Default: preserve (VirtioPanic:Policy:OnPanic;"), "the value in force, from the environment");
        }
    }

    // System.CommandLine wraps long descriptions; compare the words.
    private static string Flatten(string text) => string.Join(' ', text.Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries));

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static (int Code, string Output, string Error) Run(TempDirectory directory, params (string Name, string Value)[] environment) =>
        Run(directory, environment, []);

    private static (int Code, string Output, string Error) Run(TempDirectory directory, (string Name, string Value)[] environment, params string[] args)
    {
        var variables = environment.ToDictionary(e => e.Name, e => e.Value);
        variables["VIRTIOPANIC_VirtioPanic__JournalPath"] = directory.File("journal.jsonl");
        variables["VIRTIOPANIC_VirtioPanic__DumpDirectory"] = directory.File("dumps");
        return HostProcess.Run(s_limit, variables, args);
    }
}
