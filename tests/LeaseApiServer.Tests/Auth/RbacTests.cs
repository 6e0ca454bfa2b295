using LeaderSidecar.Testing.LeaseApi.Auth;

namespace LeaderSidecar.Testing.LeaseApi.Tests.Auth;

/// <summary>RBAC as the product's least-privilege Role grants it: by resourceNames, plus create.</summary>
public sealed class RbacTests : IAsyncLifetime
{
    private const string Token = "elector-token";
    private const string Leases = "apis/coordination.k8s.io/v1/namespaces/demo/leases";
    private LeaseApiServer _server = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync();
        _server.Tokens.Set(Token, new ApiUser("demo-elector", LeaseRule.ForElection("demo", "golden")));
        _client = _server.CreateClient(Token);
        _server.Store.Put(LeaseApi.Storage.Lease.Create("demo", "golden", new LeaseApi.Storage.LeaseSpec { HolderIdentity = "pod-a" }));
        _server.Store.Put(LeaseApi.Storage.Lease.Create("demo", "other", new LeaseApi.Storage.LeaseSpec { HolderIdentity = "pod-x" }));
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    [Theory]
    [InlineData("GET", "/golden", 200)]
    [InlineData("GET", "/other", 403)]
    [InlineData("GET", "?fieldSelector=metadata.name%3Dgolden", 200)]
    [InlineData("GET", "?fieldSelector=metadata.name%3D%3Dgolden", 200)]
    [InlineData("GET", "?fieldSelector=metadata.name%3Dother", 403)]
    [InlineData("GET", "", 403)]
    [InlineData("GET", "?fieldSelector=metadata.name!%3Dgolden", 403)]
    [InlineData("DELETE", "/golden", 403)]
    public async Task Resource_names_decide_by_the_name_in_the_url_or_the_field_selector(string method, string suffix, int expected)
    {
        var (code, _) = await Api.SendAsync(_client, new HttpMethod(method), Leases + suffix);

        Assert.Equal(expected, code);
    }

    [Fact]
    public async Task List_without_a_field_selector_is_forbidden_without_a_name_in_the_message()
    {
        var (code, json) = await Api.SendAsync(_client, HttpMethod.Get, Leases);

        Assert.Equal(403, code);
        Assert.Equal(
            "leases.coordination.k8s.io is forbidden: User \"demo-elector\" cannot list resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"demo\"",
            Json.Text(json, "message"));
        Assert.Null(json!["details"]!["name"]);
    }

    [Fact]
    public async Task Watch_by_name_is_allowed_and_a_watch_without_the_verb_is_forbidden_like_the_capture()
    {
        await using (var allowed = await WatchReader.OpenAsync(_client, $"{Leases}?watch=true&fieldSelector=metadata.name%3Dgolden"))
        {
            Assert.Equal(200, allowed.StatusCode);
            Assert.Equal("ADDED", Json.Text(await allowed.NextAsync(), "type"));
        }

        _server.Tokens.Set("no-watch", "demo-elector", new LeaseRule([LeaseRule.Get, LeaseRule.Update], ["golden"], "demo"));
        using var client = _server.CreateClient("no-watch");
        client.DefaultRequestHeaders.UserAgent.ParseAdd("curl/8.5.0");
        await using var denied = await WatchReader.OpenAsync(client, $"{Leases}?watch=true&fieldSelector=metadata.name%3Dgolden");

        var golden = GoldenExchange.Load("18-watch-forbidden-403.txt");
        Assert.Equal(golden.StatusCode, denied.StatusCode);
        Json.AssertSameShape(golden.Json, System.Text.Json.Nodes.JsonNode.Parse(await denied.ReadToEndAsync()));
    }

    [Fact]
    public async Task Create_is_allowed_for_any_name_because_rbac_cannot_limit_it()
    {
        var (code, _) = await Api.SendAsync(_client, HttpMethod.Post, Leases, Api.LeaseBody("brand-new", "pod-a"));

        Assert.Equal(201, code);
    }

    [Fact]
    public async Task Create_limited_by_name_is_never_allowed()
    {
        _server.Tokens.Set("named-create", "picky", new LeaseRule([LeaseRule.Create], ["fresh"], "demo"));
        using var client = _server.CreateClient("named-create");

        var (code, json) = await Api.SendAsync(client, HttpMethod.Post, Leases, Api.LeaseBody("fresh", "pod-a"));

        Assert.Equal(403, code);
        Assert.StartsWith("leases.coordination.k8s.io is forbidden: User \"picky\" cannot create", Json.Text(json, "message"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Update_of_a_missing_lease_creates_it_only_with_create_permission()
    {
        _server.Tokens.Set("update-only", "updater", new LeaseRule([LeaseRule.Update], ["ghost"], "demo"));
        using var updater = _server.CreateClient("update-only");

        var denied = await Api.SendAsync(updater, HttpMethod.Put, $"{Leases}/ghost", Api.LeaseBody("ghost", "pod-a"));
        _server.Store.Delete("demo", "golden");
        var created = await Api.SendAsync(_client, HttpMethod.Put, $"{Leases}/golden", Api.LeaseBody("golden", "pod-a"));

        Assert.Equal(403, denied.Code);
        Assert.Contains("cannot create resource", Json.Text(denied.Json, "message"), StringComparison.Ordinal);
        Assert.Equal(201, created.Code);
    }

    [Fact]
    public async Task Missing_and_unknown_tokens_are_unauthorized()
    {
        using var anonymous = _server.CreateClient();
        using var stranger = _server.CreateClient("who-am-i");
        var golden = GoldenExchange.Load("08-get-bad-token-401.txt");

        var (missingCode, missing) = await Api.SendAsync(anonymous, HttpMethod.Get, $"{Leases}/golden");
        var (unknownCode, unknown) = await Api.SendAsync(stranger, HttpMethod.Get, $"{Leases}/golden");
        await using var watch = await WatchReader.OpenAsync(stranger, $"{Leases}?watch=true");

        Assert.Equal(401, missingCode);
        Assert.Equal(401, unknownCode);
        Json.AssertSameShape(golden.Json, missing);
        Json.AssertSameShape(golden.Json, unknown);
        Assert.Equal(GoldenExchange.Load("17-watch-bad-token-401.txt").StatusCode, watch.StatusCode);
    }

    [Fact]
    public async Task Tokens_can_be_rotated_and_revoked_while_running()
    {
        _server.Tokens.Rotate(Token, "rotated");
        using var rotated = _server.CreateClient("rotated");

        Assert.Equal(401, (await Api.SendAsync(_client, HttpMethod.Get, $"{Leases}/golden")).Code);
        Assert.Equal(200, (await Api.SendAsync(rotated, HttpMethod.Get, $"{Leases}/golden")).Code);

        Assert.True(_server.Tokens.Remove("rotated"));
        Assert.Equal(401, (await Api.SendAsync(rotated, HttpMethod.Get, $"{Leases}/golden")).Code);
    }

    [Fact]
    public async Task With_authentication_off_no_token_is_needed()
    {
        await using var open = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false });
        using var client = open.CreateClient();

        var (code, _) = await Api.SendAsync(client, HttpMethod.Post, Leases, Api.LeaseBody("golden", "pod-a"));

        Assert.Equal(201, code);
    }
}
