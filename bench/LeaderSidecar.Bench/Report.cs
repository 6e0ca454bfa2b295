using System.Globalization;
using System.Text;

namespace LeaderSidecar.Bench;

/// <summary>One line of the summary table.</summary>
internal sealed record Row(string What, string Sidecar, string Baseline, string Ratio, string Target, string Result);

/// <summary>Everything one run measured, written out as its backend's section of <c>docs/BENCHMARKS.md</c>.</summary>
internal sealed class Report
{
    public List<Row> Rows { get; } = [];

    /// <summary>Further tables and remarks, under their headings, in the order they were measured.</summary>
    public List<(string Heading, string Markdown)> Details { get; } = [];

    public List<string> Failures { get; } = [];

    public static string Ms(Sample sample) =>
        sample.Count == 0 ? "—" : F($"{sample.Median:0.0} / {sample.P95:0.0} ms (n={sample.Count})");

    public static string Seconds(Sample sample) =>
        sample.Count == 0 ? "—" : F($"{sample.Median / 1000:0.000} / {sample.P95 / 1000:0.000} s (n={sample.Count})");

    public static string Ratio(double baseline, double sidecar) =>
        sidecar <= 0 || double.IsNaN(sidecar) || double.IsNaN(baseline) ? "—" : F($"{baseline / sidecar:0.0}×");

    public static string Verdict(bool? pass) => pass switch
    {
        true => "pass",
        false => "**miss**",
        null => "report",
    };

    public static string F(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The section's markdown: <paramref name="header"/>, the results table and the details. With
    /// <paramref name="compare"/> (the name of another section's store and a lookup of its figures
    /// by row), the second column is that section's figure of the same row instead of the polling
    /// reference, and there is no ratio.
    /// </summary>
    public string ToMarkdown(string header, string name, (string Name, Func<string, string?> Figure)? compare)
    {
        var md = new StringBuilder(header);
        md.AppendLine("### Results").AppendLine();
        if (compare is { } other)
        {
            md.AppendLine(F($"| what | leader-sidecar on {name}: median / p95 | the same on {other.Name} (its section, its own run) | target | result |"));
            md.AppendLine("|---|---|---|---|---|");
            foreach (var row in Rows)
            {
                var figure = other.Figure(row.What.Replace($"{name} backend", $"{other.Name} backend", StringComparison.Ordinal)) ?? "—";
                md.AppendLine(F($"| {row.What} | {row.Sidecar} | {figure} | {row.Target} | {row.Result} |"));
            }
        }
        else
        {
            md.AppendLine(F($"| what | leader-sidecar on {name}: median / p95 | polling reference (client-go style) | polling ÷ sidecar | target | result |"));
            md.AppendLine("|---|---|---|---|---|---|");
            foreach (var row in Rows)
            {
                md.AppendLine(F($"| {row.What} | {row.Sidecar} | {row.Baseline} | {row.Ratio} | {row.Target} | {row.Result} |"));
            }
        }

        md.AppendLine();
        if (Failures.Count > 0)
        {
            md.AppendLine("**Scenarios that failed in this run** (their rows are missing):").AppendLine();
            foreach (var failure in Failures)
            {
                md.AppendLine(F($"- {failure}"));
            }

            md.AppendLine();
        }

        foreach (var (heading, markdown) in Details)
        {
            md.AppendLine(F($"#### {heading}")).AppendLine().AppendLine(markdown.TrimEnd()).AppendLine();
        }

        return md.ToString().TrimEnd() + "\n";
    }
}
