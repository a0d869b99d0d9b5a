using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace VirtioPanic.Host.Tests;

// Debian's readelf (binutils, installed by .ci/prerequisites): an ELF reader that is not ours.
internal static partial class Readelf
{
    public static string Run(params string[] args)
    {
        var start = new ProcessStartInfo(File.Exists("/usr/bin/readelf") ? "/usr/bin/readelf" : "readelf") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            Assert.Fail($"readelf is missing: run .ci/prerequisites (it installs Debian's binutils). {ex.Message}");
            throw;
        }

        using (process)
        {
            Task<string> output = process.StandardOutput.ReadToEndAsync();
            string error = process.StandardError.ReadToEnd();
            Assert.That(process.WaitForExit(TimeSpan.FromSeconds(30)), Is.True, "readelf hung");
            Assert.That((process.ExitCode, error), Is.EqualTo((0, string.Empty)), "readelf " + string.Join(' ', args));
            return output.Result;
        }
    }

    // readelf -l -W: "  LOAD  0x001000 0x0000000000000000 0x0000000100000000 0x103000 0x103000 RWE 0x0".
    public static IEnumerable<(ulong Offset, ulong PhysicalAddress, ulong FileSize)> Loads(string text)
    {
        foreach (Match m in LoadLine().Matches(text))
        {
            yield return (Hex(m.Groups[1].Value), Hex(m.Groups[3].Value), Hex(m.Groups[4].Value));
        }
    }

    private static ulong Hex(string text) => ulong.Parse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^\s+LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", RegexOptions.Multiline)]
    private static partial Regex LoadLine();
}
