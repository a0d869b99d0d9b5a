using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using VirtioPanic.Device;
using VirtioPanic.Transport;
using VirtioPanic.VhostUser;

namespace VirtioPanic.OpenTelemetry.Tests;

// README.md "Telemetry" has a table of every instrument (meter, name, type, unit, tags). This test
// enumerates the instruments the libraries publish with a MeterListener and compares them with
// the table both ways, then checks that every measurement a guest rig produces carries exactly
// the tags its row names. A new instrument, a renamed one, another unit or a changed tag set fails here.
public sealed partial class InstrumentTableTests
{
    [Test]
    public async Task ReadmeTable_MatchesThePublishedInstruments_AndTheirMeasuredTags()
    {
        Dictionary<(string Meter, string Name), Row> table = ReadTable();
        var published = new ConcurrentDictionary<(string Meter, string Name), (string Type, string? Unit)>();
        var tags = new ConcurrentDictionary<(string Meter, string Name), ConcurrentDictionary<string, byte>>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (VirtioPanicTelemetry.MeterNames.Contains(instrument.Meter.Name))
            {
                published[(instrument.Meter.Name, instrument.Name)] = (TypeOf(instrument), instrument.Unit);
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, _, t, _) => Seen(tags, i, t));
        listener.SetMeasurementEventCallback<int>((i, _, t, _) => Seen(tags, i, t));
        listener.SetMeasurementEventCallback<double>((i, _, t, _) => Seen(tags, i, t));

        // The libraries' meters are static: make sure they exist. The policy service's come with a service (the rig's).
        RuntimeHelpers.RunClassConstructor(typeof(WatchdogDeviceMetrics).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(TransportMetrics).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(VhostUserMetrics).TypeHandle);
        await using TelemetryRig rig = await TelemetryRig.StartAsync("otel-table");
        listener.Start();

        rig.BootAndArm();
        await rig.NextAsync("VIRTIO_WDT_ARMED");
        listener.RecordObservableInstruments();
        rig.Time.Advance(TimeSpan.FromSeconds(6));
        await rig.NextAsync("WATCHDOG");
        rig.PanicWithUnknownBit();
        await rig.NextAsync("GUEST_PANICKED");
        Span<byte> misaligned = stackalloc byte[4];
        rig.Pci.ReadConfig(0x01, misaligned);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(published.Keys.Select(k => $"{k.Meter} {k.Name}").Order(), Is.EqualTo(table.Keys.Select(k => $"{k.Meter} {k.Name}").Order()),
                "README.md's instrument table lists exactly the published instruments");
            foreach (((string meter, string name), (string type, string? unit)) in published)
            {
                if (table.TryGetValue((meter, name), out Row? row))
                {
                    Assert.That((type, unit), Is.EqualTo((row.Type, row.Unit)), $"{name}: type and unit as in README.md");
                }
            }

            Assert.That(tags.Keys, Has.Count.GreaterThanOrEqualTo(8), "the rig produced measurements of many instruments");
            foreach (((string meter, string name), ConcurrentDictionary<string, byte> keys) in tags)
            {
                if (table.TryGetValue((meter, name), out Row? row))
                {
                    Assert.That((string[])[.. keys.Keys.Order()], Is.EqualTo((string[])[.. row.Tags.Order()]), $"{name}: measured tags as in README.md");
                }
            }
        }
    }

    private static void Seen(ConcurrentDictionary<(string, string), ConcurrentDictionary<string, byte>> seen, Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        ConcurrentDictionary<string, byte> keys = seen.GetOrAdd((instrument.Meter.Name, instrument.Name), _ => new());
        foreach (KeyValuePair<string, object?> tag in tags)
        {
            keys.TryAdd(tag.Key, 0);
        }
    }

    private static string TypeOf(Instrument instrument) => instrument.GetType().GetGenericTypeDefinition().Name switch
    {
        "Counter`1" => "counter",
        "UpDownCounter`1" => "updowncounter",
        "Histogram`1" => "histogram",
        "ObservableGauge`1" => "gauge",
        "ObservableCounter`1" => "observable counter",
        string other => other,
    };

    private static Dictionary<(string Meter, string Name), Row> ReadTable()
    {
        string readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"));
        var rows = new Dictionary<(string, string), Row>();
        foreach (Match m in TableRow().Matches(readme))
        {
            string[] cells = [.. m.Value.Trim().Trim('|').Split('|').Select(c => c.Trim())];
            string[] tagNames = [.. cells[4].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Unquote)];
            rows.Add((Unquote(cells[0]), Unquote(cells[1])), new Row(cells[2], Unquote(cells[3]), tagNames));
        }

        Assert.That(rows, Is.Not.Empty, "README.md has the instrument table");
        return rows;
    }

    private static string Unquote(string cell) => cell.Trim().Trim('`');

    private static string RepositoryRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "VirtioPanic.sln")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException("VirtioPanic.sln not found above " + AppContext.BaseDirectory);
    }

    // A row of the instrument table: its first cell names one of our meters.
    [GeneratedRegex(@"^\| `VirtioPanic\.[A-Za-z]+` \| `virtiopanic\.[^|]*\|[^\n]*$", RegexOptions.Multiline)]
    private static partial Regex TableRow();

    private sealed record Row(string Type, string Unit, string[] Tags);
}
