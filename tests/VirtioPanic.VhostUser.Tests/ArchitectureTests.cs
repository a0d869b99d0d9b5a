using System.Reflection;
using System.Text.RegularExpressions;
using VirtioPanic.VhostUser.Tests.RealKernel;

namespace VirtioPanic.VhostUser.Tests;

// Guards the layering rule of style.md §6 for VirtioPanic.VhostUser: it may reference the BCL,
// VirtioPanic.Virtio and Microsoft.Extensions.Logging.Abstractions only; unsafe code only in its
// Interop/ folder, each unsafe site explained by a SAFETY comment.
internal sealed partial class ArchitectureTests
{
    [Test]
    public void Assembly_ReferencesOnlyBclVirtioAndLoggingAbstractions()
    {
        Assembly subject = typeof(VhostUserBackend).Assembly;
        string[] references = [.. subject.GetReferencedAssemblies().Select(a => a.Name!)];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(references.Where(n => !IsBcl(n) && n is not "VirtioPanic.Virtio" and not "Microsoft.Extensions.Logging.Abstractions"), Is.Empty);
            Assert.That(references, Does.Contain("VirtioPanic.Virtio"));
        }
    }

    [Test]
    public void UnsafeCode_LivesOnlyInInteropFolder_AndEverySiteHasASafetyComment()
    {
        string source = Path.Combine(TestPaths.RepositoryRoot(), "src", "VirtioPanic.VhostUser");
        var offenders = new List<string>();
        var unexplained = new List<string>();
        int sites = 0;
        foreach (string file in Directory.EnumerateFiles(source, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(source, file);
            if (relative.StartsWith("obj", StringComparison.Ordinal) || relative.StartsWith("bin", StringComparison.Ordinal))
            {
                continue;
            }

            string[] lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                string code = lines[i].Split("//")[0];
                if (!UnsafeSite().IsMatch(code))
                {
                    continue;
                }

                sites++;
                if (!relative.StartsWith("Interop" + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                {
                    offenders.Add($"{relative}:{i + 1}");
                }

                bool explained = lines.Skip(Math.Max(0, i - 4)).Take(10).Any(l => l.Contains("// SAFETY:", StringComparison.Ordinal));
                if (!explained)
                {
                    unexplained.Add($"{relative}:{i + 1}");
                }
            }
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(sites, Is.GreaterThan(0), "the scan found the interop layer");
            Assert.That(offenders, Is.Empty, "unsafe code outside Interop/");
            Assert.That(unexplained, Is.Empty, "unsafe site without a // SAFETY: comment");
        }
    }

    private static bool IsBcl(string name) =>
        name is "System" or "netstandard" or "mscorlib" || name.StartsWith("System.", StringComparison.Ordinal) || name.StartsWith("Microsoft.Win32.", StringComparison.Ordinal);

    [GeneratedRegex(@"\bunsafe\b|\bUnsafe\.(?!SizeOf)|MemoryMarshal\.GetReference")]
    private static partial Regex UnsafeSite();
}
