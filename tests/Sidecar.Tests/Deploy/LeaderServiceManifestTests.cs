using System.Text.Json.Nodes;
using LeaderSidecar.Configuration;
using LeaderSidecar.Stores.Kubernetes;
using static LeaderSidecar.Tests.Deploy.ExampleDeployment;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// deploy/leader-service, the optional component for <c>--leader-service</c>: a selector-less Service,
/// the EndpointSlice NAME-leader the leader writes, a Role for that one slice, and the flag turned on in
/// the sidecar of either variant.
/// </summary>
public sealed class LeaderServiceManifestTests
{
    private static readonly Kustomization Component = Kustomization.Load("deploy/leader-service");

    private static JsonObject Service => Component.Single("Service");

    private static JsonObject Slice => Component.Single("EndpointSlice");

    [Fact]
    public void The_component_is_a_component_of_a_selector_less_service_and_its_one_leader_slice()
    {
        Assert.Equal("Component", (string?)Component.Definition["kind"]);
        var service = Name(Service["metadata"]);
        Assert.Null(Service["spec"]!["selector"]);

        Assert.Equal(LeaderEndpointSlice.SliceNameOf(service), Name(Slice["metadata"]));
        Assert.Equal("discovery.k8s.io/v1", (string?)Slice["apiVersion"]);
        var labels = Slice["metadata"]!["labels"]!;
        Assert.Equal(service, (string?)labels["kubernetes.io/service-name"]);
        Assert.Equal("leader-sidecar", (string?)labels["endpointslice.kubernetes.io/managed-by"]);
        Assert.Equal("IPv4", (string?)Slice["addressType"]);
        Assert.Empty(Slice["endpoints"]!.AsArray());

        // kube-proxy matches the Service's ports to the slice's by name.
        var servicePorts = Service["spec"]!["ports"]!.AsArray().Select(p => (string?)p!["name"]).Order();
        var slicePorts = Slice["ports"]!.AsArray().Select(p => (string?)p!["name"]).Order();
        Assert.Equal(servicePorts, slicePorts);
        Assert.Null(LeaderEndpointSlice.ServiceNameProblem(service));
    }

    [Fact]
    public void The_role_allows_get_and_update_of_the_one_slice_by_name_and_nothing_else()
    {
        var role = Component.Single("Role");
        var rule = Assert.Single(role["rules"]!.AsArray())!;
        Assert.Equal(["discovery.k8s.io"], Strings(rule["apiGroups"]));
        Assert.Equal(["endpointslices"], Strings(rule["resources"]));
        Assert.Equal([Name(Slice["metadata"])], Strings(rule["resourceNames"]));
        Assert.Equal(["get", "update"], Strings(rule["verbs"]).Order());

        AssertBoundToTheSidecarsAccount(Component, role);
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void With_the_component_the_sidecar_of_either_variant_runs_with_leader_service_and_its_pod_ip(string variant)
    {
        var example = ExampleDeployment.Load(variant);

        // Without the component the flag is off, and POD_IP comes from the downward API anyway.
        Assert.Null(example.SidecarOptions.Stores.Get<KubernetesSettings>().LeaderService);
        Assert.Equal("status.podIP", (string?)example.Sidecar["env"]!.AsArray().Single(v => (string?)v!["name"] == LeaderEndpointSlice.PodIpVariable)!["valueFrom"]!["fieldRef"]!["fieldPath"]);

        Assert.Equal("Service", (string?)Assert.Single(Component.Definition["replacements"]!.AsArray())!["source"]!["kind"]);
        example.ApplyReplacementOf(Component, "LEADER_SIDECAR_LEADER_SERVICE");
        var options = example.SidecarOptions;
        Assert.Equal(Name(Service["metadata"]), options.Stores.Get<KubernetesSettings>().LeaderService);
        var environment = example.SidecarEnvironment;
        Assert.Equal("10.244.1.7", LeaderEndpointSlice.PodIp(name => environment.GetValueOrDefault(name)).ToString());
    }
}
