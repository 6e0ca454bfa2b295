using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// deploy/network-policy: an optional kustomize component whose NetworkPolicy selects the example
/// pods and admits traffic only to the sidecar's probe port, and only from Prometheus. And the
/// manifests' comments quote only measured numbers.
/// </summary>
public sealed partial class NetworkPolicyTests
{
    private const string Directory = "deploy/network-policy";

    [Fact]
    public void The_policy_is_an_optional_component_that_neither_variant_includes()
    {
        var component = Kustomization.Load(Directory);

        Assert.Equal("Component", (string?)component.Definition["kind"]);
        Assert.Equal("kustomize.config.k8s.io/v1alpha1", (string?)component.Definition["apiVersion"]);
        var policy = component.Single("NetworkPolicy");
        Assert.Equal("networking.k8s.io/v1", (string?)policy["apiVersion"]);
        foreach (var variant in new[] { "classic", "native" })
        {
            Assert.Empty(ExampleDeployment.Load(variant).Kustomization.OfKind("NetworkPolicy"));
        }
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void The_policy_selects_the_sidecars_pods_and_admits_only_to_its_probe_port(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        var spec = Policy()["spec"]!;

        // Every label the policy selects on is on the Deployment's pods.
        var podLabels = example.Deployment["spec"]!["template"]!["metadata"]!["labels"]!.AsObject();
        var selector = spec["podSelector"]!["matchLabels"]!.AsObject();
        Assert.NotEmpty(selector);
        Assert.Null(spec["podSelector"]!["matchExpressions"]);
        foreach (var (label, value) in selector)
        {
            Assert.Equal((string?)value, (string?)podLabels[label]);
        }

        Assert.Equal(["Ingress"], ExampleDeployment.Strings(spec["policyTypes"]));
        Assert.Null(spec["egress"]);

        // Each rule names its sources and opens only the probe port, by the name the sidecar declares.
        var probePort = Assert.Single(example.Sidecar["ports"]!.AsArray(), p => (string?)p!["name"] == "probe")!;
        Assert.Equal(example.SidecarOptions.ProbeAddress!.Port, (long)probePort["containerPort"]!);
        var rules = spec["ingress"]!.AsArray();
        Assert.NotEmpty(rules);
        foreach (var rule in rules)
        {
            Assert.NotEmpty(rule!["from"]!.AsArray());
            var port = Assert.Single(rule["ports"]!.AsArray())!;
            Assert.Equal("TCP", (string?)port["protocol"]);
            Assert.Equal("probe", (string?)port["port"]);
        }
    }

    [Fact]
    public void Prometheus_is_admitted_only_by_namespace_and_pod_labels_together()
    {
        var peer = Assert.Single(Assert.Single(Policy()["spec"]!["ingress"]!.AsArray())!["from"]!.AsArray())!;

        // One peer with both selectors means "these pods in these namespaces"; two peers would
        // admit every pod of the namespace, and every pod with the labels anywhere.
        Assert.NotEmpty(peer["namespaceSelector"]!["matchLabels"]!.AsObject());
        Assert.NotEmpty(peer["podSelector"]!["matchLabels"]!.AsObject());
        Assert.Null(peer["ipBlock"]);
    }

    [Fact]
    public void The_policy_documents_why_kubelet_probes_may_need_the_node_addresses()
    {
        var text = Repository.Read($"{Directory}/networkpolicy.yaml");

        Assert.Contains("ipBlock", text, StringComparison.Ordinal);
        Assert.Contains("own node", text, StringComparison.Ordinal);
        Assert.Contains("isolates them for ingress", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_memory_figure_in_a_manifest_comment_is_a_measured_one()
    {
        // The resident-memory results of docs/BENCHMARKS.md: "| idle RSS ... | 35.5 / 35.8 MiB (n=10) | ...".
        var measured = BenchmarkRows().SelectMany(row => Figure().Matches(row).Select(m => m.Groups["value"].Value)).ToHashSet();
        Assert.Contains("35.6", measured);

        var quoted = 0;
        foreach (var file in System.IO.Directory.EnumerateFiles(Repository.PathOf("deploy"), "*.yaml", SearchOption.AllDirectories))
        {
            foreach (var comment in File.ReadLines(file).Select(l => l.TrimStart()).Where(l => l.StartsWith('#')))
            {
                foreach (Match figure in MemoryFigure().Matches(comment))
                {
                    quoted++;
                    Assert.True(
                        measured.Contains(figure.Groups["value"].Value),
                        $"{Path.GetRelativePath(Repository.Root, file)} says \"{figure.Value}\", which docs/BENCHMARKS.md does not report: {comment}");
                }
            }
        }

        Assert.True(quoted > 0, "the manifests quote the measured footprint next to the resource requests");
    }

    private static JsonObject Policy() => Kustomization.Load(Directory).Single("NetworkPolicy");

    private static IEnumerable<string> BenchmarkRows() =>
        File.ReadLines(Repository.PathOf("docs/BENCHMARKS.md")).Where(l => l.StartsWith('|') && l.Contains("RSS", StringComparison.Ordinal));

    [GeneratedRegex(@"(?<value>\d+(\.\d+)?) (/ \d+(\.\d+)? )?MiB")]
    private static partial Regex Figure();

    [GeneratedRegex(@"(?<value>\d+(\.\d+)?) ?MiB")]
    private static partial Regex MemoryFigure();
}
