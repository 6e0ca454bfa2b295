using System.Text.Json.Nodes;
using LeaderSidecar.Testing.LeaseApi.Auth;

namespace LeaderSidecar.Testing.LeaseApi.Tests.Slices;

/// <summary>The EndpointSlice API the test server serves for <c>--leader-service</c>: compare-and-swap, 404, 403, 409, 400, 422.</summary>
public sealed class EndpointSliceApiTests : IAsyncLifetime
{
    private const string Slices = "apis/discovery.k8s.io/v1/namespaces/demo/endpointslices";
    private LeaseApiServer _server = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync();
        _server.Tokens.Set("sidecar", new ApiUser("system:serviceaccount:demo:leader-sidecar", [new([LeaseRule.Get, LeaseRule.Update], ["web-leader"], "demo", "endpointslices")]));
        _server.Tokens.Set("admin", ApiUser.Admin());
        _client = _server.CreateClient("sidecar");
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Create_then_get_then_a_put_with_the_version_read_and_a_stale_put_refused()
    {
        using var admin = _server.CreateClient("admin");
        var (created, body) = await Api.SendAsync(admin, HttpMethod.Post, Slices, Slice("web-leader", "10.0.0.1"));
        Assert.Equal(201, created);
        Assert.Equal("1", body!["metadata"]!["generation"]!.ToJsonString());
        var (again, exists) = await Api.SendAsync(admin, HttpMethod.Post, Slices, Slice("web-leader", "10.0.0.1"));
        Assert.Equal(409, again);
        Assert.Equal("AlreadyExists", Json.Text(exists, "reason"));

        var (_, read) = await Api.SendAsync(_client, HttpMethod.Get, $"{Slices}/web-leader");
        var version = Json.Text(read, "metadata.resourceVersion");
        read!["endpoints"] = new JsonArray(new JsonObject { ["addresses"] = new JsonArray("10.0.0.2") });
        var (updated, written) = await Api.SendAsync(_client, HttpMethod.Put, $"{Slices}/web-leader", read.ToJsonString());
        Assert.Equal(200, updated);
        Assert.NotEqual(version, Json.Text(written, "metadata.resourceVersion"));
        Assert.Equal(["10.0.0.2"], _server.EndpointSlices.Addresses("demo", "web-leader"));
        Assert.Equal("IPv4", Json.Text(written, "addressType"));
        Assert.Equal(8080, (int)written!["ports"]![0]!["port"]!);

        var (stale, conflict) = await Api.SendAsync(_client, HttpMethod.Put, $"{Slices}/web-leader", read.ToJsonString());
        Assert.Equal(409, stale);
        Assert.Equal("Conflict", Json.Text(conflict, "reason"));
        Assert.Equal(
            "Operation cannot be fulfilled on endpointslices.discovery.k8s.io \"web-leader\": the object has been modified; please apply your changes to the latest version and try again",
            Json.Text(conflict, "message"));
        Assert.Equal(["10.0.0.2"], _server.EndpointSlices.Addresses("demo", "web-leader"));
    }

    [Fact]
    public async Task Missing_forbidden_mismatched_and_invalid_answers_are_statuses()
    {
        var (missing, notFound) = await Api.SendAsync(_client, HttpMethod.Get, $"{Slices}/web-leader");
        Assert.Equal(404, missing);
        Assert.Equal("endpointslices.discovery.k8s.io \"web-leader\" not found", Json.Text(notFound, "message"));
        var (putMissing, _) = await Api.SendAsync(_client, HttpMethod.Put, $"{Slices}/web-leader", Slice("web-leader", "10.0.0.1"));
        Assert.Equal(404, putMissing);

        var (other, forbidden) = await Api.SendAsync(_client, HttpMethod.Get, $"{Slices}/other");
        Assert.Equal(403, other);
        Assert.Equal(
            "endpointslices.discovery.k8s.io \"other\" is forbidden: User \"system:serviceaccount:demo:leader-sidecar\" cannot get resource \"endpointslices\" in API group \"discovery.k8s.io\" in the namespace \"demo\"",
            Json.Text(forbidden, "message"));
        Assert.Equal("endpointslices", Json.Text(forbidden, "details.kind"));
        var (create, _) = await Api.SendAsync(_client, HttpMethod.Post, Slices, Slice("web-leader", "10.0.0.1"));
        Assert.Equal(403, create);

        _server.EndpointSlices.CreateForService("demo", "web-leader", "web");
        var (renamed, badRequest) = await Api.SendAsync(_client, HttpMethod.Put, $"{Slices}/web-leader", Slice("other-name", "10.0.0.1"));
        Assert.Equal(400, renamed);
        Assert.Equal("BadRequest", Json.Text(badRequest, "reason"));

        var (wrongFamily, invalid) = await Api.SendAsync(_client, HttpMethod.Put, $"{Slices}/web-leader", Slice("web-leader", "fd00::1"));
        Assert.Equal(422, wrongFamily);
        Assert.Equal("endpoints[0].addresses[0]", (string?)invalid!["details"]!["causes"]![0]!["field"]);

        var (changedType, _) = await Api.SendAsync(_client, HttpMethod.Put, $"{Slices}/web-leader", Slice("web-leader", "fd00::1", "IPv6"));
        Assert.Equal(422, changedType);
        Assert.Empty(_server.EndpointSlices.Addresses("demo", "web-leader"));
    }

    private static string Slice(string name, string address, string addressType = "IPv4") => new JsonObject
    {
        ["apiVersion"] = "discovery.k8s.io/v1",
        ["kind"] = "EndpointSlice",
        ["metadata"] = new JsonObject { ["name"] = name, ["labels"] = new JsonObject { ["kubernetes.io/service-name"] = "web" } },
        ["addressType"] = addressType,
        ["endpoints"] = new JsonArray(new JsonObject { ["addresses"] = new JsonArray(address) }),
        ["ports"] = new JsonArray(new JsonObject { ["name"] = "http", ["port"] = 8080 }),
    }.ToJsonString();
}
