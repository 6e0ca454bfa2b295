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

        AssertBoundToTheSidecarsAccount(Component, role);
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void With_the_component_the_sidecar_of_either_variant_runs_with_events(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        Assert.False(example.SidecarOptions.Stores.Get<LeaseEventsSettings>().Enabled);

        example.ApplyReplacementOf(Component, "LEADER_SIDECAR_EVENTS");
        Assert.True(example.SidecarOptions.Stores.Get<LeaseEventsSettings>().Enabled);
    }
}
