using System.Text;

namespace LeaderSidecar.Bench;

/// <summary>
/// <c>docs/BENCHMARKS.md</c> as sections between markers: one per backend (each written by its own
/// run) and the notes (copied from <c>bench/NOTES.md</c>). A run replaces only the sections it
/// wrote; everything outside the markers (the title, remarks, hand-written sections) stays as it is.
/// </summary>
internal static class BenchmarksDocument
{
    public const string Notes = "notes";

    private const string Intro = """
        Written by `bench/run` (see [bench/README.md](../bench/README.md) for what each figure means and how it is taken). Each run rewrites only its own section, between the `bench/run` markers: one section per backend, and the notes from `bench/NOTES.md`. Text outside the markers is kept as it is; text inside them is replaced by the next run.
        """;

    public static string Begin(string section) => $"<!-- bench/run section {section}: begin -->";

    public static string End(string section) => $"<!-- bench/run section {section}: end -->";

    /// <summary>The text between a section's markers, or null when the document has no such section.</summary>
    public static string? Section(string document, string section)
    {
        var begin = document.IndexOf(Begin(section), StringComparison.Ordinal);
        var end = document.IndexOf(End(section), StringComparison.Ordinal);
        return begin < 0 || end < begin ? null : document[(begin + Begin(section).Length)..end];
    }

    /// <summary>
    /// <paramref name="document"/> (null: a new one) with <paramref name="section"/> set to
    /// <paramref name="content"/>. A section the document lacks goes before the notes, or at the end.
    /// </summary>
    public static string With(string? document, string section, string content)
    {
        var block = $"{Begin(section)}\n{content.Trim()}\n{End(section)}";
        document ??= $"# Benchmarks\n\n{Intro.Trim()}\n";
        var begin = document.IndexOf(Begin(section), StringComparison.Ordinal);
        var end = document.IndexOf(End(section), StringComparison.Ordinal);
        if (begin >= 0 && end > begin)
        {
            return document[..begin] + block + document[(end + End(section).Length)..];
        }

        var notes = document.IndexOf(Begin(Notes), StringComparison.Ordinal);
        return notes >= 0 && section != Notes
            ? document[..notes] + block + "\n\n" + document[notes..]
            : document.TrimEnd() + "\n\n" + block + "\n";
    }

    /// <summary>
    /// The figures of a section's tables by their first cell ("graceful failover (…)" → "4.0 / 6.1 ms
    /// (n=20)"); the first row of that name wins, which is the results table's.
    /// </summary>
    public static Func<string, string?> Figures(string? section)
    {
        var figures = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in (section ?? "").Split('\n'))
        {
            var cells = line.Trim().Split('|');
            if (cells.Length >= 4 && cells[0].Length == 0)
            {
                figures.TryAdd(cells[1].Trim(), cells[2].Trim());
            }
        }

        return what => figures.GetValueOrDefault(what);
    }

    /// <summary>Writes <paramref name="sections"/> into the file at <paramref name="path"/>, keeping the rest of it.</summary>
    public static async Task WriteAsync(string path, IEnumerable<(string Section, string Content)> sections)
    {
        var document = File.Exists(path) ? await File.ReadAllTextAsync(path) : null;
        foreach (var (section, content) in sections)
        {
            document = With(document, section, content);
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await File.WriteAllTextAsync(path, document, new UTF8Encoding(false));
    }
}
