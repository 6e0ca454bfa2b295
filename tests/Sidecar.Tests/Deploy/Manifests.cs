using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>Files of this repository, found from the test binaries upwards.</summary>
internal static class Repository
{
    public static string Root { get; } = FindRoot();

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    public static string Read(string relative) => File.ReadAllText(PathOf(relative));

    private static string FindRoot()
    {
        var directory = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(directory, "Sidecar.sln")))
        {
            directory = Path.GetDirectoryName(directory) ?? throw new InvalidOperationException("Sidecar.sln not found above the test binaries");
        }

        return directory;
    }
}

/// <summary>
/// A kustomization's inputs as kustomize reads them: its <c>kustomization.yaml</c> and every document
/// of every file its <c>resources</c> name, following directories (bases) recursively. Nothing is
/// transformed: deploy/ uses no patches, so these are the objects that get applied, except for the
/// one <c>replacements</c> entry, which the tests check on its own.
/// </summary>
internal sealed record Kustomization(string Directory, JsonObject Definition, IReadOnlyList<JsonObject> Resources)
{
    public static Kustomization Load(string relativeDirectory)
    {
        var directory = Repository.PathOf(relativeDirectory);
        var definition = (JsonObject)Yaml.LoadSingle(Path.Combine(directory, "kustomization.yaml"));
        var resources = new List<JsonObject>();
        foreach (var entry in definition["resources"]?.AsArray() ?? [])
        {
            var path = Path.GetFullPath(Path.Combine(directory, (string)entry!));
            if (System.IO.Directory.Exists(path))
            {
                resources.AddRange(Load(Path.GetRelativePath(Repository.Root, path)).Resources);
            }
            else
            {
                resources.AddRange(Yaml.LoadAll(File.ReadAllText(path)).Select(d => (JsonObject)d));
            }
        }

        return new Kustomization(directory, definition, resources);
    }

    public IEnumerable<JsonObject> OfKind(string kind) => Resources.Where(r => (string?)r["kind"] == kind);

    public JsonObject Single(string kind) => Assert.Single(OfKind(kind));
}

/// <summary>YAML documents as <see cref="JsonNode"/> trees, typed the way Kubernetes reads them.</summary>
internal static class Yaml
{
    public static JsonNode LoadSingle(string path) => Assert.Single(LoadAll(File.ReadAllText(path)));

    public static IReadOnlyList<JsonNode> LoadAll(string text)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        return [.. stream.Documents.Select(d => ToJson(d.RootNode)).OfType<JsonNode>()];
    }

    private static JsonNode? ToJson(YamlNode node) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(pair =>
            KeyValuePair.Create(((YamlScalarNode)pair.Key).Value ?? "", ToJson(pair.Value)))),
        YamlSequenceNode sequence => new JsonArray([.. sequence.Children.Select(ToJson)]),
        YamlScalarNode scalar => Scalar(scalar),
        _ => throw new InvalidDataException($"unexpected YAML node {node.NodeType} at {node.Start}"),
    };

    // A plain (unquoted) scalar may be null, a boolean or an integer, as in YAML 1.2's core schema;
    // a quoted or block scalar is always a string.
    private static JsonNode? Scalar(YamlScalarNode scalar)
    {
        var text = scalar.Value ?? "";
        if (scalar.Style is not ScalarStyle.Plain)
        {
            return JsonValue.Create(text);
        }

        return text switch
        {
            "" or "~" or "null" or "Null" or "NULL" => null,
            "true" or "True" or "TRUE" => JsonValue.Create(true),
            "false" or "False" or "FALSE" => JsonValue.Create(false),
            _ when long.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var number) => JsonValue.Create(number),
            _ => JsonValue.Create(text),
        };
    }
}

/// <summary>
/// Field paths as kustomize's <c>replacements</c> write them: dot-separated keys, list indexes, and
/// <c>[key=value]</c> to pick the list item whose field has that value.
/// </summary>
internal static class FieldPath
{
    public static JsonNode? Resolve(JsonNode? root, string path)
    {
        var node = root;
        foreach (var segment in Split(path))
        {
            node = node switch
            {
                JsonArray list when segment.StartsWith('[') && segment.EndsWith(']') && segment.IndexOf('=', StringComparison.Ordinal) is var eq and > 0 =>
                    list.SingleOrDefault(item => item is JsonObject o && (string?)o[segment[1..eq]] == segment[(eq + 1)..^1]),
                JsonArray list when int.TryParse(segment, out var index) => index < list.Count ? list[index] : null,
                JsonObject map => map[segment],
                _ => null,
            };
            if (node is null)
            {
                return null;
            }
        }

        return node;
    }

    // Dots inside [key=value] do not separate segments.
    private static IEnumerable<string> Split(string path)
    {
        var start = 0;
        var depth = 0;
        for (var i = 0; i < path.Length; i++)
        {
            depth += path[i] switch { '[' => 1, ']' => -1, _ => 0 };
            if (path[i] == '.' && depth == 0)
            {
                yield return path[start..i];
                start = i + 1;
            }
        }

        yield return path[start..];
    }
}
