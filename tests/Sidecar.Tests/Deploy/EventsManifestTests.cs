using System.Text.Json.Nodes;
using LeaderSidecar.Stores.Kubernetes;
using static LeaderSidecar.Tests.Deploy.ExampleDeployment;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// deploy/events, the optional component for <c>--events</c>: a Role that may create Events and
/// nothing else, bound to the sidecar's account, and the flag turned on in the sidecar of either variant.
/// </summary>
public sealed class EventsManifestTests
{
    private static readonly Kustomization Component = Kustomization.Load("deploy/events");

    [Fact]
    public void The_role_allows_creating_events_and_nothing_else_for_the_sidecars_account()
    {
        Assert.Equal("Component", (string?)Component.Definition["kind"]);
        var role = Component.Single("Role");
        var rule = Assert.Single(role["rules"]!.AsArray())!;
        Assert.Equal([""], Strings(rule["apiGroups"]));
        Assert.Equal(["events"], Strings(rule["resources"]));
        Assert.Equal(["create"], Strings(rule["verbs"]));
        Assert.Null(rule["resourceNames"]);

        var binding = Component.Single("RoleBinding");
        Assert.Equal(Name(role["metadata"]), (string?)binding["roleRef"]!["name"]);
        var subject = Assert.Single(binding["subjects"]!.AsArray())!;
        Assert.Equal("ServiceAccount", (string?)subject["kind"]);
        Assert.Equal(Name(ExampleDeployment.Load("native").Kustomization.Single("ServiceAccount")["metadata"]), (string?)subject["name"]);
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void With_the_component_the_sidecar_of_either_variant_runs_with_events(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        Assert.False(example.SidecarOptions.Stores.Get<LeaseEventsSettings>().Enabled);

        // The component's replacement: the target selected by this variant's annotation, applied as kustomize does.
        var replacement = Assert.Single(Component.Definition["replacements"]!.AsArray())!;
        var source = Component.Single((string)replacement["source"]!["kind"]!);
        var value = (string?)FieldPath.Resolve(source, (string)replacement["source"]!["fieldPath"]!);
        var annotation = (string?)example.Deployment["metadata"]!["annotations"]!["leader-sidecar/variant"];
        var target = Assert.Single(replacement["targets"]!.AsArray(), t => (string?)t!["select"]!["annotationSelector"] == $"leader-sidecar/variant={annotation}")!;
        var path = (string)Assert.Single(target["fieldPaths"]!.AsArray())!;
        var containerList = variant == "native" ? "initContainers" : "containers";
        Assert.Equal($"spec.template.spec.{containerList}.[name=leader-sidecar].env.[name=LEADER_SIDECAR_EVENTS].value", path);

        example.Sidecar["env"]!.AsArray().Add((JsonNode)new JsonObject { ["name"] = "LEADER_SIDECAR_EVENTS", ["value"] = value });
        Assert.NotNull(FieldPath.Resolve(example.Deployment, path));
        Assert.True(example.SidecarOptions.Stores.Get<LeaseEventsSettings>().Enabled);
    }
}
