using System.Text.RegularExpressions;

namespace VirtioPanic.Host.Tests;

// Every csharp block of README.md and of each package readme (src/*/README.md) is compiled and run
// by a test: the test carries the block verbatim (whitespace aside) between
// "// README-SNIPPET: <readme path>" and "// END-README-SNIPPET", inside the code that sets it up
// and asserts what it did. This test fails on a block without such a copy (the example changed,
// or a new one has no test) and on a copy whose block is gone.
public sealed partial class ReadmeSnippetTests
{
    [Test]
    public void EveryCsharpBlock_InTheReadmes_HasAVerbatimCopyInATest()
    {
        string root = RepositoryRoot.Find();
        string[] readmes = [Path.Combine(root, "README.md"), .. Directory.GetFiles(Path.Combine(root, "src"), "README.md", SearchOption.AllDirectories)];
        var copies = Copies(root);
        var blocks = new List<(string Readme, string Code)>();
        foreach (string readme in readmes)
        {
            string relative = Path.GetRelativePath(root, readme).Replace('\\', '/');
            blocks.AddRange(CsharpBlock().Matches(File.ReadAllText(readme)).Select(m => (relative, Normalize(m.Groups[1].Value))));
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(blocks, Has.Count.GreaterThanOrEqualTo(9), "README.md's and every package readme's examples were found");
            foreach ((string readme, string code) in blocks)
            {
                Assert.That(copies.Any(c => c.Readme == readme && c.Code == code), Is.True, $"{readme}: no test carries this block verbatim:\n{code}");
            }

            foreach ((string readme, string code, string file) in copies)
            {
                Assert.That(blocks.Any(b => b.Readme == readme && b.Code == code), Is.True, $"{file}: its README-SNIPPET for {readme} matches no block there (the readme changed?):\n{code}");
            }
        }
    }

    private static List<(string Readme, string Code, string File)> Copies(string root)
    {
        var copies = new List<(string, string, string)>();
        foreach (string file in Directory.GetFiles(Path.Combine(root, "tests"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal) || file.EndsWith(nameof(ReadmeSnippetTests) + ".cs", StringComparison.Ordinal))
            {
                continue;
            }

            foreach (Match m in SnippetRegion().Matches(File.ReadAllText(file)))
            {
                // One copy may stand for the same block in several readmes: "// README-SNIPPET: README.md src/X/README.md".
                foreach (string readme in m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    copies.Add((readme, Normalize(m.Groups[2].Value), Path.GetRelativePath(root, file)));
                }
            }
        }

        return copies;
    }

    private static string Normalize(string code) => WhiteSpace().Replace(code, " ").Trim();

    [GeneratedRegex(@"^```csharp\r?\n(.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex CsharpBlock();

    [GeneratedRegex(@"// README-SNIPPET: ([^\r\n]+)\r?\n(.*?)// END-README-SNIPPET", RegexOptions.Singleline)]
    private static partial Regex SnippetRegion();

    [GeneratedRegex(@"\s+")]
    private static partial Regex WhiteSpace();
}
