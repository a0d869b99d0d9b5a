using System.Reflection;
using System.Text.RegularExpressions;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Virtio.Tests;

// Guards the layering rule of style.md §6 for VirtioPanic.Virtio: BCL only, and unsafe code only
// in its Memory/ folder, each unsafe site explained by a SAFETY comment.
public sealed partial class ArchitectureTests
{
    [Test]
    public void Assembly_ReferencesOnlyTheBaseClassLibrary()
    {
        Assembly subject = typeof(Virtqueue).Assembly;
        string[] references = [.. subject.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.That(references.Where(n => !IsBcl(n)), Is.Empty, "VirtioPanic.Virtio may reference the BCL only");
    }

    [Test]
    public void UnsafeCode_LivesOnlyInMemoryFolder_AndEverySiteHasASafetyComment()
    {
        string source = Path.Combine(RepositoryRoot(), "src", "VirtioPanic.Virtio");
        var offenders = new List<string>();
        var unexplained = new List<string>();
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

                if (!relative.StartsWith("Memory" + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                {
                    offenders.Add($"{relative}:{i + 1}");
                }

                // The SAFETY comment opens the unsafe block or method body, or sits right above the call.
                bool explained = lines.Skip(Math.Max(0, i - 4)).Take(10).Any(l => l.Contains("// SAFETY:", StringComparison.Ordinal));
                if (!explained)
                {
                    unexplained.Add($"{relative}:{i + 1}");
                }
            }
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(offenders, Is.Empty, "unsafe code outside Memory/");
            Assert.That(unexplained, Is.Empty, "unsafe site without a // SAFETY: comment");
        }
    }

    internal static bool IsBcl(string name) =>
        name is "System" or "netstandard" or "mscorlib" || name.StartsWith("System.", StringComparison.Ordinal) || name.StartsWith("Microsoft.Win32.", StringComparison.Ordinal);

    internal static string RepositoryRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "VirtioPanic.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return dir ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    // "unsafe" as a modifier or block, and the Unsafe.* / MemoryMarshal.GetReference APIs that are
    // unsafe without the keyword (style.md §5.13).
    [GeneratedRegex(@"\bunsafe\b|\bUnsafe\.(?!SizeOf)|MemoryMarshal\.GetReference")]
    private static partial Regex UnsafeSite();
}
