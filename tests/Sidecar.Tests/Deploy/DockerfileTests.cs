using System.Globalization;
using System.Text.Json.Nodes;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// The Dockerfile builds the binary the test suite tests (the same publish command as
/// <c>scripts/test</c>) and runs it as a numeric non-root user with nothing else in the image.
/// </summary>
public sealed class DockerfileTests
{
    /// <summary>The final stage's user, a uid.</summary>
    public static long RuntimeUser =>
        long.Parse(Dockerfile.Load().FinalStage.Single(i => i.Keyword == "USER").Arguments, NumberStyles.None, CultureInfo.InvariantCulture);

    [Fact]
    public void The_build_stage_publishes_exactly_as_scripts_test_does_apart_from_the_output_directory()
    {
        var dockerfile = Dockerfile.Load();
        var run = Assert.Single(dockerfile.Instructions, i => i.Keyword == "RUN" && i.Arguments.Contains("dotnet publish", StringComparison.Ordinal));
        var tested = Assert.Single(
            Repository.Read("scripts/test").Split('\n').Select(l => l.Trim()),
            l => l.StartsWith("dotnet publish ", StringComparison.Ordinal));

        var words = Words(tested);
        var output = words.IndexOf("-o");
        Assert.True(output > 0 && output + 1 < words.Count, $"no -o in \"{tested}\"");
        words[output + 1] = "/out";
        Assert.Equal(words, Words(run.Arguments));

        // It runs in a build stage that the final stage copies the binary from.
        Assert.NotEqual(dockerfile.Stages.Count - 1, run.Stage);
        var copy = Assert.Single(dockerfile.FinalStage, i => i.Keyword == "COPY");
        Assert.Equal($"--from={dockerfile.Stages[run.Stage].Name} /out/leader-sidecar /leader-sidecar", copy.Arguments);
    }

    [Fact]
    public void The_final_stage_runs_the_binary_as_a_numeric_non_root_user_and_exposes_nothing()
    {
        var dockerfile = Dockerfile.Load();
        Assert.True(dockerfile.Stages.Count >= 2, "multi-stage: the SDK stays out of the final image");
        Assert.True(RuntimeUser > 0, "the final stage must not run as root");

        var entrypoint = Assert.Single(dockerfile.FinalStage, i => i.Keyword == "ENTRYPOINT");
        Assert.Equal(["/leader-sidecar"], JsonNode.Parse(entrypoint.Arguments)!.AsArray().Select(n => (string?)n));
        Assert.DoesNotContain(dockerfile.Instructions, i => i.Keyword is "EXPOSE" or "CMD");
        // The last USER wins; nothing after it may switch back.
        Assert.Equal("USER", dockerfile.FinalStage.Last(i => i.Keyword is "USER" or "RUN").Keyword);
    }

    [Fact]
    public void Base_images_are_build_arguments_and_the_dockerfile_names_no_registry()
    {
        var dockerfile = Dockerfile.Load();
        var arguments = dockerfile.Instructions.Where(i => i.Keyword == "ARG").Select(i => i.Arguments).ToList();
        foreach (var stage in dockerfile.Stages)
        {
            var image = stage.Image;
            Assert.Matches(@"^\$\{?[A-Z_]+\}?$", image);
            // Declared without a default: a default would have to name a registry or silently mean
            // the one the builder happens to use.
            Assert.Contains(image.Trim('$', '{', '}'), arguments);
        }

        // Not even in a comment: HOST.DOMAIN[:PORT]/PATH.
        Assert.DoesNotMatch(@"\b[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?/[a-z0-9]", Repository.Read("Dockerfile"));
    }

    [Fact]
    public void The_build_context_leaves_out_build_output_and_git()
    {
        var ignored = Repository.Read(".dockerignore").Split('\n').Select(l => l.Trim()).ToHashSet(StringComparer.Ordinal);
        foreach (var pattern in new[] { "**/bin/", "**/obj/", "artifacts/", ".git", "**/node_modules/" })
        {
            Assert.Contains(pattern, ignored);
        }
    }

    private static List<string> Words(string command) => [.. command.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
}

/// <summary>A Dockerfile as instructions (continuation lines joined, comments dropped) grouped into stages.</summary>
internal sealed record Dockerfile(IReadOnlyList<Dockerfile.Instruction> Instructions, IReadOnlyList<Dockerfile.BuildStage> Stages)
{
    public IEnumerable<Instruction> FinalStage => Instructions.Where(i => i.Stage == Stages.Count - 1);

    public static Dockerfile Load()
    {
        var instructions = new List<Instruction>();
        var stages = new List<BuildStage>();
        var pending = "";
        foreach (var raw in Repository.Read("Dockerfile").Split('\n'))
        {
            var line = raw.Trim();
            if (line.StartsWith('#') || (line.Length == 0 && pending.Length == 0))
            {
                continue;
            }

            if (line.EndsWith('\\'))
            {
                pending += line[..^1] + " ";
                continue;
            }

            line = pending + line;
            pending = "";
            if (line.Length == 0)
            {
                continue;
            }

            var space = line.IndexOf(' ', StringComparison.Ordinal);
            var keyword = (space < 0 ? line : line[..space]).ToUpperInvariant();
            var arguments = space < 0 ? "" : line[(space + 1)..].Trim();
            if (keyword == "FROM")
            {
                var parts = arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                var name = parts.Length == 3 && parts[1].Equals("AS", StringComparison.OrdinalIgnoreCase) ? parts[2] : stages.Count.ToString(CultureInfo.InvariantCulture);
                stages.Add(new BuildStage(parts[0], name));
            }

            instructions.Add(new Instruction(keyword, arguments, stages.Count - 1));
        }

        return new Dockerfile(instructions, stages);
    }

    /// <summary>One instruction; <see cref="Stage"/> is -1 before the first FROM.</summary>
    public sealed record Instruction(string Keyword, string Arguments, int Stage);

    public sealed record BuildStage(string Image, string Name);
}
