namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// deploy/flow-control: a FlowSchema that puts exactly the sidecar's Lease requests in the
/// <c>leader-election</c> priority level, ahead of the catch-all <c>service-accounts</c> schema.
/// </summary>
public sealed class FlowSchemaTests
{
    private static readonly System.Text.Json.Nodes.JsonNode Schema = Yaml.LoadSingle(Repository.PathOf("deploy/flow-control/flowschema.yaml"));

    [Fact]
    public void The_sidecars_lease_requests_go_to_the_leader_election_priority_level_before_service_accounts_match()
    {
        Assert.Equal("flowcontrol.apiserver.k8s.io/v1", (string)Schema["apiVersion"]!);
        Assert.Equal("FlowSchema", (string)Schema["kind"]!);
        var spec = Schema["spec"]!;
        Assert.Equal("leader-election", (string)spec["priorityLevelConfiguration"]!["name"]!);
        // The built-in `service-accounts` schema has precedence 9000 and the control plane's own
        // schemas go up to 900: lower numbers match first.
        var precedence = (long)spec["matchingPrecedence"]!;
        Assert.InRange(precedence, 901, 8999);
        Assert.Equal("ByUser", (string)spec["distinguisherMethod"]!["type"]!);
    }

    [Fact]
    public void It_matches_only_the_base_service_account_and_only_the_lease_verbs_its_role_grants()
    {
        var account = Yaml.LoadSingle(Repository.PathOf("deploy/base/serviceaccount.yaml"));
        var role = Yaml.LoadSingle(Repository.PathOf("deploy/base/role.yaml"));
        var granted = role["rules"]!.AsArray()
            .Where(r => r!["resources"]!.AsArray().Any(x => (string)x! == "leases"))
            .SelectMany(r => r!["verbs"]!.AsArray().Select(v => (string)v!))
            .ToHashSet();

        var rule = Assert.Single(Schema["spec"]!["rules"]!.AsArray())!;
        var subject = Assert.Single(rule["subjects"]!.AsArray())!;
        Assert.Equal("ServiceAccount", (string)subject["kind"]!);
        Assert.Equal((string)account["metadata"]!["name"]!, (string)subject["serviceAccount"]!["name"]!);
        Assert.Null(rule["nonResourceRules"]);

        var resources = Assert.Single(rule["resourceRules"]!.AsArray())!;
        Assert.Equal(["coordination.k8s.io"], resources["apiGroups"]!.AsArray().Select(x => (string)x!));
        Assert.Equal(["leases"], resources["resources"]!.AsArray().Select(x => (string)x!));
        Assert.Equal(granted.Order(), resources["verbs"]!.AsArray().Select(x => (string)x!).Order());
        // The same namespace for the account and its requests: the one to set when applying it.
        Assert.Equal([(string)subject["serviceAccount"]!["namespace"]!], resources["namespaces"]!.AsArray().Select(x => (string)x!));
    }
}
