using System.Text.RegularExpressions;
using LeaderSidecar.Tests.Deploy;

namespace LeaderSidecar.Tests.Docs;

/// <summary>The documentation stays true to the code and stands alone in a clone.</summary>
public sealed partial class DocsTests
{
    [Fact]
    public void Every_log_event_in_the_code_is_listed_with_its_id_and_name()
    {
        var documented = Repository.Read("docs/CONFIGURATION.md");
        var events = Directory.EnumerateFiles(Repository.PathOf("src"), "*.cs", SearchOption.AllDirectories)
            .Where(path => !path.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .SelectMany(path => LogEvent().Matches(File.ReadAllText(path)))
            .Select(match => $"| `{match.Groups["id"].Value}` | {match.Groups["name"].Value} |")
            .ToList();

        Assert.NotEmpty(events);
        Assert.All(events, row => Assert.Contains(row, documented, StringComparison.Ordinal));
    }

    [Fact]
    public void The_readme_and_docs_point_nowhere_outside_the_repository()
    {
        var pages = Directory.EnumerateFiles(Repository.PathOf("docs"), "*.md")
            .Select(path => Path.GetRelativePath(Repository.Root, path))
            .Append("README.md");
        foreach (var page in pages)
        {
            var text = Repository.Read(page);
            Assert.False(text.Contains("../shared", StringComparison.Ordinal), $"{page} links outside the repository");
            Assert.False(IssueReference().IsMatch(text), $"{page} names an issue number: {IssueReference().Match(text).Value}");
        }
    }

    [GeneratedRegex("""EventId = (?<id>[0-9]+), EventName = "(?<name>[A-Za-z]+)""")]
    private static partial Regex LogEvent();

    [GeneratedRegex(@"\bissues? #?[0-9]+", RegexOptions.IgnoreCase)]
    private static partial Regex IssueReference();
}
