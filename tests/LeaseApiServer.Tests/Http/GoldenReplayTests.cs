using System.Text.Json.Nodes;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Storage;

namespace LeaderSidecar.Testing.LeaseApi.Tests.Http;

/// <summary>
/// Replays the requests captured from a real kube-apiserver (Golden/*.txt) and compares the answers: status
/// code, content type and the whole JSON body in key order, only uid/resourceVersion/timestamps excepted.
/// The client calls itself curl, as the capture did, so the server indents and names the field manager alike.
/// </summary>
public sealed class GoldenReplayTests : IAsyncLifetime
{
    private const string Token = "golden-token";
    private LeaseApiServer _server = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        // The capture's history started at 316 ("too old resource version: 2 (316)").
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { InitialResourceVersion = 316 });
        _server.Tokens.Set(Token, "demo-elector", new LeaseRule(["*"], Namespace: "demo"));
        _client = _server.CreateClient(Token);
        _client.DefaultRequestHeaders.UserAgent.ParseAdd("curl/8.5.0");
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Create_get_list_and_replace_answer_like_the_real_server()
    {
        var created = await ReplayAsync("01-create-201.txt");
        await ReplayAsync("02-get-200.txt");
        var list = await ReplayAsync("09-list-fieldselector-200.txt");
        Assert.Equal(Json.Text(created, "metadata.resourceVersion"), Json.Text(list, "metadata.resourceVersion"));

        var firstVersion = Json.Text(created, "metadata.resourceVersion");
        var replaced = await ReplayAsync("03-replace-200.txt", body => body.Replace("\"319\"", $"\"{firstVersion}\"", StringComparison.Ordinal));
        Assert.Equal(long.Parse(firstVersion, System.Globalization.CultureInfo.InvariantCulture) + 1, long.Parse(Json.Text(replaced, "metadata.resourceVersion"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(Json.Text(created, "metadata.uid"), Json.Text(replaced, "metadata.uid"));

        // The capture's stale write reused 319, the version before the replace.
        await ReplayAsync("04-replace-stale-409.txt", body => body.Replace("\"319\"", $"\"{firstVersion}\"", StringComparison.Ordinal));
        await ReplayAsync("05-create-exists-409.txt");
    }

    [Theory]
    [InlineData("06-get-missing-404.txt")]
    [InlineData("11-replace-name-mismatch-400.txt")]
    [InlineData("12-replace-malformed-400.txt")]
    [InlineData("13-create-negative-duration-422.txt")]
    public async Task Errors_carry_the_real_status_bodies(string capture)
    {
        await _server.Store.PutAsync("demo", "golden");
        await ReplayAsync(capture);
    }

    [Fact]
    public async Task Replace_without_resource_version_is_invalid()
    {
        await _server.Store.PutAsync("demo", "golden");
        await ReplayAsync("10-replace-no-rv-422.txt");
    }

    [Fact]
    public async Task Get_in_a_namespace_the_role_does_not_cover_is_forbidden()
    {
        await ReplayAsync("07-get-forbidden-403.txt");
    }

    [Fact]
    public async Task Unknown_token_is_unauthorized()
    {
        _client.DefaultRequestHeaders.Authorization = new("Bearer", "not-a-token");
        await ReplayAsync("08-get-bad-token-401.txt");
    }

    private async Task<JsonNode?> ReplayAsync(string capture, Func<string, string>? editBody = null)
    {
        var golden = GoldenExchange.Load(capture);
        using var request = new HttpRequestMessage(new HttpMethod(golden.Method!), golden.Path!.TrimStart('/'));
        if (golden.RequestBody is { } body)
        {
            request.Content = Api.JsonBody(editBody?.Invoke(body) ?? body);
        }

        using var response = await _client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(golden.StatusCode, (int)response.StatusCode);
        Assert.Equal(golden.Headers["content-type"], response.Content.Headers.ContentType?.ToString());
        var actual = JsonNode.Parse(text);
        Json.AssertSameShape(golden.Json, actual);
        return actual;
    }
}

internal static class StoreSeeding
{
    /// <summary>Puts the captured "golden" Lease (pod-a) straight into the store.</summary>
    public static Task PutAsync(this LeaseStore store, string namespaceName, string name)
    {
        store.Put(Lease.Create(namespaceName, name, new LeaseSpec
        {
            HolderIdentity = "pod-a",
            LeaseDurationSeconds = 15,
            AcquireTime = DateTimeOffset.Parse("2026-11-25T02:04:12.130207Z", System.Globalization.CultureInfo.InvariantCulture),
            RenewTime = DateTimeOffset.Parse("2026-11-25T02:04:12.130207Z", System.Globalization.CultureInfo.InvariantCulture),
            LeaseTransitions = 0,
        }));
        return Task.CompletedTask;
    }
}
