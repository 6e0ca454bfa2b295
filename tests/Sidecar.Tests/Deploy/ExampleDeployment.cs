using System.Text.Json.Nodes;
using LeaderSidecar.Configuration;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// One variant of deploy/ (<c>classic</c> or <c>native</c>): its Role, its Deployment's pod, the
/// sidecar and app containers in it, and the sidecar's configuration as the daemon itself parses it.
/// </summary>
internal sealed class ExampleDeployment
{
    public const string SidecarName = "leader-sidecar";
    public const string AppName = "app";

    /// <summary>What the downward API would give in a pod, for parsing the sidecar's configuration.</summary>
    private static readonly Dictionary<string, string> DownwardApi = new(StringComparer.Ordinal)
    {
        ["metadata.name"] = "example-app-5d8f7c9b4-x2x7q",
        ["metadata.namespace"] = "demo",
        ["status.podIP"] = "10.244.1.7",
    };

    private ExampleDeployment(string variant)
    {
        Variant = variant;
        Kustomization = Kustomization.Load($"deploy/{variant}");
        Deployment = Kustomization.Single("Deployment");
        Role = Kustomization.Single("Role");
        Pod = (JsonObject)Deployment["spec"]!["template"]!["spec"]!;
        var sidecars = Containers("initContainers").Concat(Containers("containers")).Where(c => Name(c) == SidecarName).ToList();
        Sidecar = Assert.Single(sidecars);
        App = Assert.Single(Containers("containers"), c => Name(c) == AppName);
    }

    public static TheoryData<string> Variants => ["classic", "native"];

    public string Variant { get; }

    public Kustomization Kustomization { get; }

    public JsonObject Deployment { get; }

    public JsonObject Role { get; }

    public JsonObject Pod { get; }

    public JsonObject Sidecar { get; }

    public JsonObject App { get; }

    public IEnumerable<JsonObject> AllContainers => Containers("initContainers").Concat(Containers("containers"));

    public IReadOnlyList<string> SidecarArgs => [.. (Sidecar["args"]?.AsArray() ?? []).Select(a => (string)a!)];

    /// <summary>The sidecar's environment as the process would see it; downward-API fields get sample values.</summary>
    public IReadOnlyDictionary<string, string> SidecarEnvironment
    {
        get
        {
            var environment = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var variable in Sidecar["env"]?.AsArray() ?? [])
            {
                var name = (string)variable!["name"]!;
                if (variable["value"] is { } value)
                {
                    environment[name] = (string)value!;
                }
                else if ((string?)variable["valueFrom"]?["fieldRef"]?["fieldPath"] is { } fieldPath)
                {
                    environment[name] = DownwardApi[fieldPath];
                }
                else
                {
                    Assert.Fail($"{Variant}: sidecar variable {name} comes from a source the tests do not know");
                }
            }

            return environment;
        }
    }

    /// <summary>The sidecar's configuration, parsed by the daemon's own command line parser.</summary>
    public SidecarOptions SidecarOptions
    {
        get
        {
            var environment = SidecarEnvironment;
            return CommandLine.Parse(SidecarArgs, name => environment.GetValueOrDefault(name)) switch
            {
                ParseResult.Run run => run.Options,
                ParseResult.Invalid invalid => throw new Xunit.Sdk.XunitException($"{Variant}: the daemon refuses the sidecar's configuration: {invalid.Message}"),
                var other => throw new Xunit.Sdk.XunitException($"{Variant}: the sidecar's configuration does not run the daemon: {other}"),
            };
        }
    }

    /// <summary>A flag's value as the daemon reads it: the last <c>--flag=V</c> or <c>--flag V</c>, else its environment twin.</summary>
    public string? SidecarFlag(string flag)
    {
        string? value = null;
        var args = SidecarArgs;
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i].StartsWith($"--{flag}=", StringComparison.Ordinal))
            {
                value = args[i][(flag.Length + 3)..];
            }
            else if (args[i] == $"--{flag}" && i + 1 < args.Count)
            {
                value = args[++i];
            }
        }

        var twin = "LEADER_SIDECAR_" + flag.ToUpperInvariant().Replace('-', '_');
        return value ?? SidecarEnvironment.GetValueOrDefault(twin);
    }

    /// <summary>The sidecar's lease rules from the Role: verbs and resource names of each rule.</summary>
    public IReadOnlyList<(string[] ApiGroups, string[] Resources, string[] Verbs, string[]? ResourceNames)> RoleRules =>
        [.. Role["rules"]!.AsArray().Select(rule => (
            Strings(rule!["apiGroups"]),
            Strings(rule["resources"]),
            Strings(rule["verbs"]),
            rule["resourceNames"] is { } names ? Strings(names) : null))];

    public static ExampleDeployment Load(string variant) => new(variant);

    /// <summary>Checks that an optional component binds its <paramref name="role"/> to the sidecar's ServiceAccount, and to nothing else.</summary>
    public static void AssertBoundToTheSidecarsAccount(Kustomization component, JsonObject role)
    {
        var binding = component.Single("RoleBinding");
        Assert.Equal(Name(role["metadata"]), (string?)binding["roleRef"]!["name"]);
        var subject = Assert.Single(binding["subjects"]!.AsArray())!;
        Assert.Equal("ServiceAccount", (string?)subject["kind"]);
        Assert.Equal(Name(Load("native").Kustomization.Single("ServiceAccount")["metadata"]), (string?)subject["name"]);
    }

    /// <summary>
    /// Applies an optional component's one replacement to this variant's sidecar as kustomize does:
    /// the source field's value becomes the sidecar's <paramref name="variable"/>, in the target this
    /// variant's annotation selects.
    /// </summary>
    public void ApplyReplacementOf(Kustomization component, string variable)
    {
        var replacement = Assert.Single(component.Definition["replacements"]!.AsArray())!;
        var source = component.Single((string)replacement["source"]!["kind"]!);
        var value = (string?)FieldPath.Resolve(source, (string)replacement["source"]!["fieldPath"]!);
        var annotation = (string?)Deployment["metadata"]!["annotations"]!["leader-sidecar/variant"];
        Assert.Equal(Variant, annotation);
        var target = Assert.Single(replacement["targets"]!.AsArray(), t => (string?)t!["select"]!["annotationSelector"] == $"leader-sidecar/variant={annotation}")!;
        var path = (string)Assert.Single(target["fieldPaths"]!.AsArray())!;
        var containerList = Variant == "native" ? "initContainers" : "containers";
        Assert.Equal($"spec.template.spec.{containerList}.[name=leader-sidecar].env.[name={variable}].value", path);

        Sidecar["env"]!.AsArray().Add((JsonNode)new JsonObject { ["name"] = variable, ["value"] = value });
        Assert.NotNull(FieldPath.Resolve(Deployment, path));
    }

    public static string Name(JsonNode? node) => (string)node!["name"]!;

    public static string[] Strings(JsonNode? node) => [.. (node?.AsArray() ?? []).Select(s => (string)s!)];

    private IEnumerable<JsonObject> Containers(string field) => (Pod[field]?.AsArray() ?? []).Select(c => (JsonObject)c!);
}
