using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Xml.Linq;

namespace VirtioPanic.Host.Tests;

// The CI check for the packages: `dotnet pack` of the solution produces exactly the seven library
// packages (and their symbol packages), each with its readme, license, repository commit, one 0.x
// version for all, a real description, the assembly and its XML docs. It packs with --no-build
// from the libraries this test project's build already compiled (the Host reference pulls in all
// seven), so it costs a pack, not a build: about 6 s on the loaded 2-core machine.
public sealed class PackageTests
{
    private static readonly string[] s_expected =
    [
        "VirtioPanic.Device", "VirtioPanic.GuestDriver", "VirtioPanic.Hosting", "VirtioPanic.OpenTelemetry",
        "VirtioPanic.Transport", "VirtioPanic.VhostUser", "VirtioPanic.Virtio",
    ];

    private static readonly TimeSpan s_limit = TimeSpan.FromMinutes(3);

    [Test]
    public void Pack_Solution_ProducesExactlyTheLibraryPackages_WithReadmeLicenseRepositoryAndSymbols()
    {
        string root = RepositoryRoot.Find();
        using var output = new TempDirectory();
        RunPack(root, output.Path);

        string[] packages = [.. Directory.GetFiles(output.Path, "*.nupkg").Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        string[] symbols = [.. Directory.GetFiles(output.Path, "*.snupkg").Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        string version = Child(Nuspec(Path.Combine(output.Path, packages[0])), "version")!.Value;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(version, Does.Match(@"^0\.\d+\.\d+"), "0.x until the public API is declared stable");
            Assert.That(packages, Is.EqualTo(s_expected.Select(id => $"{id}.{version}.nupkg")), "exactly the libraries; Host, tests, bench and fuzz are not packable");
            Assert.That(symbols, Is.EqualTo(s_expected.Select(id => $"{id}.{version}.snupkg")));
        }

        foreach (string id in s_expected)
        {
            string package = Path.Combine(output.Path, $"{id}.{version}.nupkg");
            XElement metadata = Nuspec(package);
            XElement? repository = Child(metadata, "repository");
            using ZipArchive zip = ZipFile.OpenRead(package);
            string[] entries = [.. zip.Entries.Select(e => e.FullName)];
            string packedReadme = ReadEntry(zip, "README.md");
            using ZipArchive symbolZip = ZipFile.OpenRead(Path.ChangeExtension(package, ".snupkg"));

            using (Assert.EnterMultipleScope())
            {
                Assert.That(Child(metadata, "version")!.Value, Is.EqualTo(version), $"{id}: one version for all packages");
                Assert.That(Child(metadata, "readme")?.Value, Is.EqualTo("README.md"), id);
                Assert.That(packedReadme, Is.EqualTo(File.ReadAllText(Path.Combine(root, "src", id, "README.md"))), $"{id}: the README.md beside the csproj");
                Assert.That(packedReadme, Does.Contain("```csharp"), $"{id}: the readme shows an example");
                Assert.That(Child(metadata, "license")?.Attribute("type")?.Value, Is.EqualTo("expression"), id);
                Assert.That(Child(metadata, "license")?.Value, Is.EqualTo("MIT"), id);
                Assert.That(Child(metadata, "description")?.Value, Is.Not.EqualTo("Package Description").And.Length.GreaterThan(40), id);
                Assert.That(Child(metadata, "tags")?.Value, Does.Contain("virtio"), id);
                Assert.That(repository?.Attribute("type")?.Value, Is.EqualTo("git"), id);
                Assert.That(repository?.Attribute("commit")?.Value, Does.Match("^[0-9a-f]{40}$"), $"{id}: SourceLink records the commit");
                Assert.That(entries, Does.Contain($"lib/net10.0/{id}.dll").And.Contain($"lib/net10.0/{id}.xml"), id);
                Assert.That(symbolZip.Entries.Select(e => e.FullName), Does.Contain($"lib/net10.0/{id}.pdb"), id);
            }
        }
    }

    private static void RunPack(string root, string output)
    {
        string configuration = typeof(PackageTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
        var start = new ProcessStartInfo(DotNet())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = root,
        };
        foreach (string arg in new[] { "pack", Path.Combine(root, "VirtioPanic.sln"), "-c", configuration, "--no-build", "--no-restore", "-o", output, "-nologo" })
        {
            start.ArgumentList.Add(arg);
        }

        using Process pack = Process.Start(start)!;
        Task<string> stdout = pack.StandardOutput.ReadToEndAsync();
        Task<string> stderr = pack.StandardError.ReadToEndAsync();
        if (!pack.WaitForExit(s_limit))
        {
            pack.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet pack did not finish within {s_limit}");
        }

        pack.WaitForExit();
        Assert.That(pack.ExitCode, Is.Zero, $"dotnet pack failed:\n{stdout.Result}\n{stderr.Result}");
    }

    private static XElement Nuspec(string package)
    {
        using ZipArchive zip = ZipFile.OpenRead(package);
        ZipArchiveEntry entry = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal) && !e.FullName.Contains('/', StringComparison.Ordinal));
        using Stream stream = entry.Open();
        XElement root = XDocument.Load(stream).Root!;
        // NuGet writes the oldest nuspec schema that can express the package; compare local names only.
        return root.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static XElement? Child(XElement parent, string name) => parent.Elements().SingleOrDefault(e => e.Name.LocalName == name);

    private static string ReadEntry(ZipArchive zip, string name)
    {
        ZipArchiveEntry? entry = zip.GetEntry(name);
        Assert.That(entry, Is.Not.Null, $"{name} in the package");
        using var reader = new StreamReader(entry!.Open());
        return reader.ReadToEnd();
    }


    private static string DotNet()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        string? process = Environment.ProcessPath;
        return process is not null && Path.GetFileNameWithoutExtension(process) == "dotnet" ? process : "dotnet";
    }
}
