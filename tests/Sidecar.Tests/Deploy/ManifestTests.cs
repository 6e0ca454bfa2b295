using System.Text.Json.Nodes;
using LeaderSidecar.Configuration;
using LeaderSidecar.Stores.Kubernetes;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// The example manifests in deploy/ say what the design and deploy/README.md promise: least-privilege
/// RBAC for the sidecar's own Lease, a locked-down pod, probes on the probe listener, a grace period
/// long enough for the release, and a sidecar configuration the daemon accepts.
/// </summary>
public sealed class ManifestTests
{
    private const string LeaseGroup = "coordination.k8s.io";
    private const string SharedDirectory = "/run/leader";

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void A_variant_is_the_base_plus_one_deployment_and_the_binding_joins_its_account_and_role(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        var kinds = example.Kustomization.Resources.Select(r => (string?)r["kind"]).Order(StringComparer.Ordinal);
        Assert.Equal(["Deployment", "Role", "RoleBinding", "ServiceAccount"], kinds);

        var account = example.Kustomization.Single("ServiceAccount");
        var binding = example.Kustomization.Single("RoleBinding");
        Assert.Equal("Role", (string?)binding["roleRef"]!["kind"]);
        Assert.Equal(Name(example.Role), (string?)binding["roleRef"]!["name"]);
        var subject = Assert.Single(binding["subjects"]!.AsArray());
        Assert.Equal("ServiceAccount", (string?)subject!["kind"]);
        Assert.Equal(Name(account), (string?)subject["name"]);
        Assert.Equal(Name(account), (string?)example.Pod["serviceAccountName"]);
        Assert.True((long)example.Deployment["spec"]!["replicas"]! >= 2, "hot standbys need more than one replica");
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void The_role_allows_exactly_the_election_verbs_on_the_lease_the_sidecar_competes_for(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        var lease = example.SidecarOptions.LeaseName;

        Assert.Collection(
            example.RoleRules,
            named =>
            {
                Assert.Equal([LeaseGroup], named.ApiGroups);
                Assert.Equal(["leases"], named.Resources);
                Assert.Equal(["get", "list", "update", "watch"], named.Verbs.Order(StringComparer.Ordinal));
                Assert.Equal(lease, Assert.Single(named.ResourceNames ?? []));
            },
            create =>
            {
                Assert.Equal([LeaseGroup], create.ApiGroups);
                Assert.Equal(["leases"], create.Resources);
                Assert.Equal(["create"], create.Verbs);
                Assert.Null(create.ResourceNames);
            });
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void Kustomize_copies_the_lease_name_from_the_role_into_the_sidecar(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        var replacement = Assert.Single(example.Kustomization.Definition["replacements"]!.AsArray())!;

        var source = replacement["source"]!;
        Assert.Equal("Role", (string?)source["kind"]);
        Assert.Equal(Name(example.Role), (string?)source["name"]);
        var lease = (string?)FieldPath.Resolve(example.Role, (string)source["fieldPath"]!);
        Assert.Equal(lease, Assert.Single(example.RoleRules[0].ResourceNames ?? []));

        var target = Assert.Single(replacement["targets"]!.AsArray())!;
        Assert.Equal("Deployment", (string?)target["select"]!["kind"]);
        Assert.Equal(Name(example.Deployment), (string?)target["select"]!["name"]);
        var path = (string)Assert.Single(target["fieldPaths"]!.AsArray())!;
        // The target is the sidecar's LEADER_SIDECAR_LEASE_NAME (the twin of --lease-name), and the
        // files already hold the same name, so they read correctly without kustomize too.
        Assert.Same(EnvValue(example.Sidecar, "LEADER_SIDECAR_LEASE_NAME"), FieldPath.Resolve(example.Deployment, path));

        // The copy is what the daemon reads: no --lease-name flag overrides it.
        Assert.Null(example.SidecarArgs.FirstOrDefault(a => a.StartsWith("--lease-name", StringComparison.Ordinal)));
        Assert.Equal(lease, example.SidecarOptions.LeaseName);
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void The_daemon_accepts_the_sidecar_configuration_and_takes_identity_and_namespace_from_the_pod(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        // Parsed by the daemon's own parser: an unknown flag, a bad value or bad timing fails here.
        var options = example.SidecarOptions;

        Assert.Null(example.Sidecar["command"]);
        Assert.Equal("kubernetes", options.Backend);
        Assert.Equal("metadata.name", FieldRef(example.Sidecar, "POD_NAME"));
        Assert.Equal("metadata.namespace", FieldRef(example.Sidecar, "POD_NAMESPACE"));
        Assert.Equal("example-app-5d8f7c9b4-x2x7q", options.Identity);
        Assert.Equal("demo", options.Namespace);
        Assert.Null(example.SidecarFlag("identity"));
        Assert.Null(example.SidecarFlag("namespace"));
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void App_surfaces_stay_on_loopback_and_the_probes_reach_the_probe_listener(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        var options = example.SidecarOptions;
        Assert.True(options.HttpAddress.Ip is { } ip && System.Net.IPAddress.IsLoopback(ip), $"HTTP surface on {options.HttpAddress}");
        Assert.True(options.GrpcAddress.IsUnixSocket, $"gRPC surface on {options.GrpcAddress}");

        // Only the probe listener (/healthz, /readyz, /metrics) is on the pod IP, for the kubelet and Prometheus.
        var probe = options.ProbeAddress;
        Assert.NotNull(probe);
        Assert.Equal(System.Net.IPAddress.Any, probe.Ip);

        // The one port the sidecar declares is the probe listener's, named as the probes use it.
        var port = Assert.Single(example.Sidecar["ports"]!.AsArray())!;
        Assert.Equal("probe", (string?)port["name"]);
        Assert.Equal(probe.Port, (long)port["containerPort"]!);
        Assert.Null(port["hostPort"]);
        Assert.Null(example.App["ports"]);

        AssertProbe(example.Sidecar["livenessProbe"], "/healthz");
        AssertProbe(example.Sidecar["readinessProbe"], "/readyz");
        if (variant == "native")
        {
            AssertProbe(example.Sidecar["startupProbe"], "/healthz");
        }

        var annotations = example.Deployment["spec"]!["template"]!["metadata"]!["annotations"];
        if (annotations?["prometheus.io/port"] is { } scrapePort)
        {
            Assert.Equal(probe.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), (string?)scrapePort);
        }
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void The_grpc_address_is_in_the_environment_so_that_an_exec_of_status_or_resign_finds_the_socket(string variant)
    {
        // `kubectl exec POD -c leader-sidecar -- /leader-sidecar resign` inherits the container's
        // environment, never the daemon's flags.
        var example = ExampleDeployment.Load(variant);
        Assert.DoesNotContain(example.SidecarArgs, a => a.StartsWith("--grpc-address", StringComparison.Ordinal));
        Assert.Equal(example.SidecarOptions.GrpcAddress.ToString(), example.SidecarEnvironment["LEADER_SIDECAR_GRPC_ADDRESS"]);
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void The_leader_file_and_the_socket_live_in_an_empty_dir_mounted_in_both_containers(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        var options = example.SidecarOptions;
        Assert.Equal(SharedDirectory, Path.GetDirectoryName(options.LeaderFile));
        Assert.Equal(SharedDirectory, Path.GetDirectoryName(options.GrpcAddress.UnixSocketPath));

        var sidecarMount = Assert.Single(Mounts(example.Sidecar), m => (string?)m["mountPath"] == SharedDirectory);
        var appMount = Assert.Single(Mounts(example.App), m => (string?)m["mountPath"] == SharedDirectory);
        Assert.Equal(Name(sidecarMount), Name(appMount));
        Assert.NotEqual(true, (bool?)sidecarMount["readOnly"]);
        var volume = Assert.Single(example.Pod["volumes"]!.AsArray(), v => Name(v) == Name(sidecarMount));
        Assert.NotNull(volume!["emptyDir"]);
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void Every_container_is_non_root_read_only_without_privileges_or_capabilities(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        var pod = example.Pod["securityContext"];
        foreach (var container in example.AllContainers)
        {
            var own = container["securityContext"];
            JsonNode? Effective(string field) => own?[field] ?? pod?[field];
            var name = Name(container);

            Assert.True((bool?)Effective("runAsNonRoot") == true, $"{name}: runAsNonRoot");
            Assert.True((bool?)own?["allowPrivilegeEscalation"] == false, $"{name}: allowPrivilegeEscalation");
            Assert.True((bool?)own?["readOnlyRootFilesystem"] == true, $"{name}: readOnlyRootFilesystem");
            Assert.NotEqual(true, (bool?)own?["privileged"]);
            Assert.Equal(["ALL"], ExampleDeployment.Strings(own?["capabilities"]?["drop"]));
            Assert.Null(own?["capabilities"]?["add"]);
            Assert.Equal("RuntimeDefault", (string?)Effective("seccompProfile")?["type"]);
            // One uid for both, the runtime image's: the gRPC socket is owner-only.
            Assert.Equal(DockerfileTests.RuntimeUser, (long?)Effective("runAsUser"));
        }
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void Only_the_sidecar_gets_an_api_token(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        Assert.False((bool?)example.Pod["automountServiceAccountToken"], "the pod must not mount a token into every container");

        var mount = Assert.Single(Mounts(example.Sidecar), m => (string?)m["mountPath"] == KubernetesConnection.ServiceAccountDirectory);
        Assert.True((bool?)mount["readOnly"]);
        var volume = Assert.Single(example.Pod["volumes"]!.AsArray(), v => Name(v) == Name(mount))!;
        var sources = volume["projected"]!["sources"]!.AsArray();
        Assert.Equal("token", (string?)sources.Select(s => s!["serviceAccountToken"]).Single(t => t is not null)!["path"]);
        Assert.Contains(sources, s => s!["configMap"]?["items"]?[0]?["path"]?.GetValue<string>() == "ca.crt");
        Assert.DoesNotContain(Mounts(example.App), m => Name(m) == Name(mount));
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void The_grace_period_outlasts_the_sidecars_longest_shutdown(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        var options = example.SidecarOptions;
        var grace = TimeSpan.FromSeconds((long)example.Pod["terminationGracePeriodSeconds"]!);

        // The drain, then the release (at most a renew deadline), plus the 2 s the daemon's own
        // shutdown allows itself; past the grace period the kubelet kills it mid-release.
        Assert.True(options.DrainTimeout > TimeSpan.Zero, "the examples show the drain");
        Assert.True(
            grace > options.DrainTimeout + options.RenewDeadline + TimeSpan.FromSeconds(2),
            $"terminationGracePeriodSeconds {grace.TotalSeconds} s <= drain {options.DrainTimeout.TotalSeconds} s + renew deadline {options.RenewDeadline.TotalSeconds} s + 2 s");
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void Every_container_requests_resources_and_has_a_memory_limit(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        foreach (var container in example.AllContainers)
        {
            var resources = container["resources"];
            Assert.NotNull(resources?["requests"]?["cpu"]);
            Assert.NotNull(resources?["requests"]?["memory"]);
            Assert.NotNull(resources?["limits"]?["memory"]);
        }
    }

    [Fact]
    public void The_native_variant_runs_the_sidecar_as_a_restartable_init_container_and_the_classic_one_beside_the_app()
    {
        var native = ExampleDeployment.Load("native");
        var init = Assert.Single(native.Pod["initContainers"]!.AsArray())!;
        Assert.Equal(ExampleDeployment.SidecarName, Name(init));
        Assert.Equal("Always", (string?)init["restartPolicy"]);
        Assert.NotNull(init["startupProbe"]);
        Assert.DoesNotContain(native.Pod["containers"]!.AsArray(), c => Name(c) == ExampleDeployment.SidecarName);

        var classic = ExampleDeployment.Load("classic");
        Assert.Null(classic.Pod["initContainers"]);
        Assert.Equal(
            [ExampleDeployment.AppName, ExampleDeployment.SidecarName],
            classic.Pod["containers"]!.AsArray().Select(Name).Order(StringComparer.Ordinal));
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    public void Images_name_no_registry_and_the_sidecar_runs_the_image_the_dockerfile_builds(string variant)
    {
        var example = ExampleDeployment.Load(variant);
        foreach (var container in example.AllContainers)
        {
            var image = (string)container["image"]!;
            var first = image.Split('/')[0];
            Assert.False(image.Contains('/', StringComparison.Ordinal) && (first.Contains('.', StringComparison.Ordinal) || first.Contains(':', StringComparison.Ordinal) || first == "localhost"), $"image {image} names a registry");
        }

        Assert.StartsWith("leader-sidecar:", (string)example.Sidecar["image"]!, StringComparison.Ordinal);
    }

    private static string Name(JsonNode? node) => ExampleDeployment.Name(node is JsonObject o && o["metadata"] is { } m ? m : node);

    private static IEnumerable<JsonObject> Mounts(JsonObject container) =>
        (container["volumeMounts"]?.AsArray() ?? []).Select(m => (JsonObject)m!);

    private static JsonNode? EnvValue(JsonObject container, string name) =>
        Assert.Single(container["env"]?.AsArray() ?? [], e => (string?)e!["name"] == name)!["value"];

    private static string? FieldRef(JsonObject container, string name) =>
        (string?)container["env"]?.AsArray().SingleOrDefault(e => (string?)e!["name"] == name)?["valueFrom"]?["fieldRef"]?["fieldPath"];

    private static void AssertProbe(JsonNode? probe, string path)
    {
        Assert.NotNull(probe);
        var get = probe["httpGet"];
        Assert.NotNull(get);
        Assert.Equal(path, (string?)get["path"]);
        Assert.Equal("probe", (string?)get["port"]);
    }
}
