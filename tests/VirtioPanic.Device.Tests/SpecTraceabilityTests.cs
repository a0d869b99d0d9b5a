using System.Text.RegularExpressions;

namespace VirtioPanic.Device.Tests;

// Keeps spec/conformance.md honest: every normative statement of spec/virtio-watchdog.md has a row,
// every test the map names exists in the test sources, and every WDT_DEV_n / WDT_DRV_n test is named
// after a statement the chapter really has.
public sealed partial class SpecTraceabilityTests
{
    private static readonly string s_root = FindRoot();

    // Every C# source under tests/ (not build output), read once for both source checks.
    private static readonly Lazy<string[]> s_testSources = new(() =>
        [.. Directory.EnumerateFiles(Path.Combine(s_root, "tests"), "*.cs", SearchOption.AllDirectories)
            .Where(p => !p.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Select(File.ReadAllText)]);

    [Test]
    public void EveryNormativeStatement_HasARowInTheConformanceMap()
    {
        string[] statements = Statements();
        HashSet<string> mapped = [.. MapRows().Select(r => r.Statement)];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(statements, Has.Length.GreaterThan(40), "the chapter's statements were found");
            Assert.That(statements.Where(s => !mapped.Contains(s)), Is.Empty, "statements without a row in spec/conformance.md");
        }
    }

    [Test]
    public void EveryTestTheMapNames_ExistsInTheTestSources()
    {
        string sources = string.Join('\n', s_testSources.Value);
        var named = new List<string>();
        var missing = new List<string>();
        foreach ((string statement, string tests) in MapRows())
        {
            foreach (Match m in CodeSpan().Matches(tests))
            {
                string name = m.Groups[1].Value;
                if (!Identifier().IsMatch(name))
                {
                    continue;   // a field or a path mentioned in passing
                }

                string member = name.Contains('.', StringComparison.Ordinal) ? name[(name.LastIndexOf('.') + 1)..] : name;
                bool isClass = member.EndsWith("Tests", StringComparison.Ordinal) && !member.Contains('_', StringComparison.Ordinal);
                named.Add(member);
                bool found = isClass
                    ? sources.Contains($"class {member}", StringComparison.Ordinal)
                    : Regex.IsMatch(sources, $@"\b{Regex.Escape(member)}\s*\(") || sources.Contains($"SetName(\"{member}\")", StringComparison.Ordinal);
                if (!found)
                {
                    missing.Add($"{statement}: {name}");
                }
            }
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(named, Has.Count.GreaterThan(80), "the map's test names were found");
            Assert.That(missing, Is.Empty, "tests named in spec/conformance.md that do not exist");
        }
    }

    [Test]
    public void EveryStatementNamedTest_RefersToAStatementOfTheChapter()
    {
        HashSet<string> statements = [.. Statements()];
        string[] orphans = [.. s_testSources.Value
            .SelectMany(text => TestName().Matches(text).Select(m => $"WDT-{m.Groups[1].Value}-{m.Groups[2].Value}"))
            .Distinct()
            .Where(s => !statements.Contains(s))];

        Assert.That(orphans, Is.Empty, "tests named after statements the chapter does not have");
    }

    private static string[] Statements() =>
        [.. StatementDefinition().Matches(File.ReadAllText(Path.Combine(s_root, "spec", "virtio-watchdog.md"))).Select(m => m.Groups[1].Value).Distinct()];

    private static IEnumerable<(string Statement, string Tests)> MapRows()
    {
        foreach (string line in File.ReadLines(Path.Combine(s_root, "spec", "conformance.md")))
        {
            Match m = MapRow().Match(line);
            if (m.Success)
            {
                yield return (m.Groups[1].Value, m.Groups[2].Value);
            }
        }
    }

    private static string FindRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "VirtioPanic.sln")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException("repository root (VirtioPanic.sln) not found above " + AppContext.BaseDirectory);
    }

    // "- **WDT-DEV-7**: ..." in the chapter.
    [GeneratedRegex(@"\*\*(WDT-(?:DEV|DRV)-\d+)\*\*")]
    private static partial Regex StatementDefinition();

    // "| WDT-DEV-7 | ... |" rows of the map; group 2 is everything after the statement column.
    [GeneratedRegex(@"^\|\s*(WDT-(?:DEV|DRV)-\d+)\s*\|(.*)$")]
    private static partial Regex MapRow();

    [GeneratedRegex(@"`([^`]+)`")]
    private static partial Regex CodeSpan();

    // Test classes and (Class.)Method names; not fields like `host_sequence` or paths.
    [GeneratedRegex(@"^([A-Z][A-Za-z0-9]*\.)?(WDT_[A-Za-z0-9_]+|[A-Z][A-Za-z0-9]*_[A-Za-z0-9_]+|[A-Z][A-Za-z0-9]*Tests)$")]
    private static partial Regex Identifier();

    // Test methods named after a statement: "void WDT_DEV_7_..." or "Task WDT_DRV_3_...".
    [GeneratedRegex(@"\b(?:void|Task)\s+WDT_(DEV|DRV)_(\d+)_")]
    private static partial Regex TestName();
}
