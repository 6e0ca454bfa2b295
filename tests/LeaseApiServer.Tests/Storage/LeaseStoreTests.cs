using LeaderSidecar.Testing.LeaseApi.Storage;

namespace LeaderSidecar.Testing.LeaseApi.Tests.Storage;

public sealed class LeaseStoreTests
{
    private const string Leases = "apis/coordination.k8s.io/v1/namespaces/demo/leases";

    [Fact]
    public async Task One_revision_counter_orders_writes_to_all_leases()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false, InitialResourceVersion = 500 });

        var a = server.Store.Put(Lease.Create("demo", "a", new LeaseSpec { HolderIdentity = "x" }));
        var b = server.Store.Put(Lease.Create("other", "b", new LeaseSpec { HolderIdentity = "y" }));
        var a2 = server.Store.Update("demo", "a", spec => spec with { HolderIdentity = "z" });

        Assert.Equal([501L, 502L, 503L], new[] { a.Revision, b.Revision, a2.Revision });
        Assert.Equal(a.Metadata.Uid, a2.Metadata.Uid);
        Assert.Equal(503, server.Store.Revision);
        Assert.True(server.Store.Delete("demo", "a"));
        Assert.Equal(504, server.Store.Revision);
        Assert.False(server.Store.Delete("demo", "a"));
    }

    [Fact]
    public async Task A_recreated_lease_gets_a_new_uid()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        var first = server.Store.Put(Lease.Create("demo", "a", new LeaseSpec()));
        server.Store.Delete("demo", "a");

        var second = server.Store.Put(Lease.Create("demo", "a", new LeaseSpec()));

        Assert.NotEqual(first.Metadata.Uid, second.Metadata.Uid);
    }

    [Fact]
    public async Task Stale_put_conflicts_and_a_put_with_an_old_uid_conflicts_too()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        using var client = server.CreateClient();
        var old = server.Store.Put(Lease.Create("demo", "golden", new LeaseSpec { HolderIdentity = "pod-a" }));
        server.Store.Update("demo", "golden", spec => spec with { HolderIdentity = "pod-b" });

        var stale = await Api.SendAsync(client, HttpMethod.Put, $"{Leases}/golden", Api.LeaseBody("golden", "pod-a", old.Metadata.ResourceVersion));
        Assert.Equal(409, stale.Code);
        Assert.Equal("Conflict", Json.Text(stale.Json, "reason"));

        server.Store.Delete("demo", "golden");
        var body = System.Text.Json.Nodes.JsonNode.Parse(Api.LeaseBody("golden", "pod-a", old.Metadata.ResourceVersion))!;
        body["metadata"]!["uid"] = old.Metadata.Uid;
        var gone = await Api.SendAsync(client, HttpMethod.Put, $"{Leases}/golden", body.ToJsonString());
        Assert.Equal(409, gone.Code);
        Assert.Contains("Precondition failed: UID in precondition", Json.Text(gone.Json, "message"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Delete_answers_a_success_status_and_honours_preconditions()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        using var client = server.CreateClient();
        var lease = server.Store.Put(Lease.Create("demo", "golden", new LeaseSpec { HolderIdentity = "pod-a" }));

        using var wrong = new HttpRequestMessage(HttpMethod.Delete, $"{Leases}/golden")
        {
            Content = Api.JsonBody("""{"preconditions":{"resourceVersion":"1"}}"""),
        };
        using var refused = await client.SendAsync(wrong);
        var deleted = await Api.SendAsync(client, HttpMethod.Delete, $"{Leases}/golden");
        var missing = await Api.SendAsync(client, HttpMethod.Delete, $"{Leases}/golden");

        Assert.Equal(409, (int)refused.StatusCode);
        Assert.Equal(200, deleted.Code);
        Assert.Equal("Success", Json.Text(deleted.Json, "status"));
        Assert.Equal(lease.Metadata.Uid, Json.Text(deleted.Json, "details.uid"));
        Assert.Equal(404, missing.Code);
    }

    [Theory]
    [InlineData("2026-11-25T02:04:12Z", "cannot parse \\\"Z\\\" as \\\".000000\\\"")]
    [InlineData("2026-11-25T02:04:12.130207123Z", "cannot parse \\\"123Z\\\" as \\\"Z07:00\\\"")]
    [InlineData("2026-11-25 02:04:12.130207Z", "cannot parse \\\" 02:04:12.130207Z\\\" as \\\"T\\\"")]
    public async Task Micro_time_needs_exactly_six_fractional_digits_as_in_go(string time, string problem)
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        using var client = server.CreateClient();
        var body = Api.LeaseBody("golden", "pod-a", time: time);

        using var response = await client.PostAsync(Leases, Api.JsonBody(body));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Contains("Lease in version \\\"v1\\\" cannot be handled as a Lease: parsing time", text, StringComparison.Ordinal);
        Assert.Contains(problem, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Times_with_an_offset_are_stored_in_utc_with_microseconds()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        using var client = server.CreateClient();

        var (code, json) = await Api.SendAsync(client, HttpMethod.Post, Leases, Api.LeaseBody("golden", "pod-a", time: "2026-11-25T04:04:12.000001+02:00"));

        Assert.Equal(201, code);
        Assert.Equal("2026-11-25T02:04:12.000001Z", Json.Text(json, "spec.renewTime"));
    }

    [Fact]
    public async Task A_body_without_json_content_type_is_unsupported()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        using var client = server.CreateClient();

        using var response = await client.PostAsync(Leases, new StringContent(Api.LeaseBody("golden", "pod-a")));

        Assert.Equal(415, (int)response.StatusCode);
    }

    [Fact]
    public async Task Creating_with_a_resource_version_is_refused_like_etcd3_storage_does()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        using var client = server.CreateClient();

        var (code, json) = await Api.SendAsync(client, HttpMethod.Post, Leases, Api.LeaseBody("golden", "pod-a", resourceVersion: "5"));

        Assert.Equal(500, code);
        Assert.Equal("resourceVersion should not be set on objects to be created", Json.Text(json, "message"));
    }

    [Fact]
    public async Task Disposal_ends_open_watches()
    {
        var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        using var client = server.CreateClient();
        var watch = await WatchReader.OpenAsync(client, $"{Leases}?watch=true");
        await Eventually.WaitUntilAsync(() => server.OpenWatches == 1, "the watch is open");

        await server.DisposeAsync();

        Assert.Null(await watch.NextAsync());
        await watch.DisposeAsync();
    }
}
