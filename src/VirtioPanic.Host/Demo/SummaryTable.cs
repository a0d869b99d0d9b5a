using System.Globalization;
using System.Text;
using VirtioPanic.Hosting;

namespace VirtioPanic.Host.Demo;

// The table that closes a demo run: every event the policy service handled, what it decided and
// which VM-control calls it made, then the VM's end state.
internal static class SummaryTable
{
    internal static string Render(IReadOnlyList<HandledEvent> handled, DemoVm vm, DemoSettings settings, string journal, JournalRecoveryReport? recovery)
    {
        string[] header = ["#", "event", "vcpu", "policy", "VM-control calls", "outcome", "note"];
        var rows = new List<string[]>();
        foreach (HandledEvent e in handled)
        {
            string calls = e.Steps.Count == 0 ? "-" : string.Join(" → ", e.Steps.Select(s => PolicyNames.Of(s.Operation) + (s.Succeeded ? string.Empty : " ✗") + string.Create(CultureInfo.InvariantCulture, $" ({s.Duration.TotalMilliseconds:0.00} ms)")));
            rows.Add(
            [
                e.Sequence == 0 ? "-" : e.Sequence.ToString(CultureInfo.InvariantCulture),
                e.Name,
                e.Event?.VcpuId?.ToString(CultureInfo.InvariantCulture) ?? "-",
                e.PolicyAction,
                calls,
                e.Outcome,
                Shorten(e.Note ?? (e.Event as VirtioPanic.Device.GuestReportEvent)?.Message ?? string.Empty, 60),
            ]);
        }

        int[] widths = [.. header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length)))];
        var text = new StringBuilder();
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"Summary — scenario {PolicyNames.Of(settings.ScenarioKind)}, {vm.TransportName}, {settings.Ring} rings");
        string rule = "+" + string.Join("+", widths.Select(w => new string('-', w + 2))) + "+";
        text.AppendLine(rule);
        text.AppendLine(Row(header, widths));
        text.AppendLine(rule);
        foreach (string[] row in rows)
        {
            text.AppendLine(Row(row, widths));
        }

        text.AppendLine(rule);
        text.AppendLine(CultureInfo.InvariantCulture, $"VM state: {vm.State.ToString().ToLowerInvariant()}; boots: {vm.Boots}; interrupts delivered: {vm.Interrupts}");
        text.AppendLine(CultureInfo.InvariantCulture, $"Events handled: {handled.Count}; VM-control calls: {handled.Sum(h => h.Steps.Count)}; failed calls: {handled.Sum(h => h.Steps.Count(s => !s.Succeeded))}");
        text.AppendLine(CultureInfo.InvariantCulture, $"Journal: {journal}{(recovery is { UnactedEvents.Count: > 0 } ? $" ({recovery.UnactedEvents.Count} events from an earlier run were never acted on; see the log)" : string.Empty)}");
        return text.ToString();
    }

    private static string Row(string[] cells, int[] widths) => "| " + string.Join(" | ", cells.Select((c, i) => c.PadRight(widths[i]))) + " |";

    private static string Shorten(string text, int max)
    {
        string line = text.ReplaceLineEndings(" ");
        return line.Length <= max ? line : line[..(max - 1)] + "…";
    }
}
