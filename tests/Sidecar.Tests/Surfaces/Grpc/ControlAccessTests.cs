using Grpc.Core;
using Leadership.V1;
using LeaderSidecar.Configuration;
using LeaderSidecar.Surfaces.Grpc;
using Duration = Google.Protobuf.WellKnownTypes.Duration;

namespace LeaderSidecar.Tests.Surfaces.Grpc;

/// <summary>
/// Who may change leadership: over TCP only a caller with the control token, or anyone once the
/// operator allowed it; over the owner-only unix socket, whoever can connect. The elector campaigns
/// on an in-memory lease, so an accepted Resign really steps down.
/// </summary>
public sealed class ControlAccessTests : IDisposable
{
    private const string Token = "s3cret-Token_0123456789";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly HttpClient Http = new() { Timeout = Deadline };
    private readonly TempDirectory _dir = new();

    [Fact]
    public async Task Over_tcp_without_a_token_resign_and_confirm_stopped_are_refused_and_the_leader_stays_leader()
    {
        await using var host = await StartLeaderAsync();
        using var channel = host.Channel();
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);

        var resign = await Assert.ThrowsAsync<RpcException>(async () => await client.ResignAsync(new ResignRequest { HoldOff = Duration.FromTimeSpan(TimeSpan.FromHours(1)) }));
        var confirm = await Assert.ThrowsAsync<RpcException>(async () => await client.ConfirmStoppedAsync(new ConfirmStoppedRequest()));

        Assert.Equal(StatusCode.PermissionDenied, resign.StatusCode);
        Assert.Contains("--control-token-file", resign.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(StatusCode.PermissionDenied, confirm.StatusCode);
        Assert.True(host.State.Current.IsLeader);
        // Reading stays open to everyone.
        Assert.Equal(Role.Leader, (await client.GetStatusAsync(new GetStatusRequest())).Role);
        var metrics = await Http.GetStringAsync(new Uri(host.HttpAddress, "/metrics"));
        Assert.Contains("leader_sidecar_grpc_control_refused_total{name=\"app\",method=\"Resign\"} 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains("leader_sidecar_grpc_control_refused_total{name=\"app\",method=\"ConfirmStopped\"} 1\n", metrics, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer wrong")]
    [InlineData("Bearer " + Token + "x")]
    [InlineData(Token)]
    [InlineData("Basic " + Token)]
    public async Task Over_tcp_a_missing_or_wrong_token_is_refused(string? authorization)
    {
        await using var host = await StartLeaderAsync(controlToken: WriteToken(Token + "\n"));
        using var channel = host.Channel();
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);
        var headers = authorization is null ? null : new Metadata { { "authorization", authorization } };

        var error = await Assert.ThrowsAsync<RpcException>(async () => await client.ResignAsync(new ResignRequest(), headers));

        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
        Assert.DoesNotContain(Token, error.Status.Detail, StringComparison.Ordinal);
        Assert.True(host.State.Current.IsLeader);
    }

    [Fact]
    public async Task Over_tcp_the_right_token_resigns()
    {
        await using var host = await StartLeaderAsync(controlToken: WriteToken(Token + "\n"));
        using var channel = host.Channel();
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);

        var resigned = await client.ResignAsync(
            new ResignRequest { HoldOff = Duration.FromTimeSpan(TimeSpan.FromMinutes(1)) },
            new Metadata { { "authorization", "Bearer " + Token } });

        Assert.NotEqual(Role.Leader, resigned.Status.Role);
        Assert.False(host.State.Current.IsLeader);
    }

    [Fact]
    public async Task Over_tcp_allow_tcp_control_resigns_without_a_token()
    {
        await using var host = await StartLeaderAsync(allowTcpControl: true);
        using var channel = host.Channel();

        var resigned = await new Leadership.V1.Leadership.LeadershipClient(channel).ResignAsync(new ResignRequest { HoldOff = Duration.FromTimeSpan(TimeSpan.FromMinutes(1)) });

        Assert.NotEqual(Role.Leader, resigned.Status.Role);
        Assert.False(host.State.Current.IsLeader);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task Over_the_unix_socket_resign_needs_no_token()
    {
        await using var host = await StartLeaderAsync(unixSocket: _dir.File("grpc.sock"));
        using var channel = host.Channel();

        var resigned = await new Leadership.V1.Leadership.LeadershipClient(channel).ResignAsync(new ResignRequest { HoldOff = Duration.FromTimeSpan(TimeSpan.FromMinutes(1)) });

        Assert.NotEqual(Role.Leader, resigned.Status.Role);
        Assert.False(host.State.Current.IsLeader);
    }

    [Theory]
    [InlineData(-1, "hold_off must be between 0 and 1h (got -1s)")]
    [InlineData(7200, "hold_off must be between 0 and 1h (got 2h)")]
    [InlineData(86400, "hold_off must be between 0 and 1h (got 24h)")]
    public async Task Resign_refuses_a_hold_off_outside_zero_to_an_hour_and_names_it(long seconds, string expected)
    {
        await using var host = await StartLeaderAsync(allowTcpControl: true);
        using var channel = host.Channel();

        var error = await Assert.ThrowsAsync<RpcException>(async () =>
            await new Leadership.V1.Leadership.LeadershipClient(channel).ResignAsync(new ResignRequest { HoldOff = new Duration { Seconds = seconds } }));

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Equal(expected, error.Status.Detail);
        Assert.True(host.State.Current.IsLeader);
        Assert.Equal(TimeSpan.FromHours(1), LeadershipService.MaxHoldOff);
    }

    public void Dispose() => _dir.Dispose();

    private static async Task<SurfaceHost> StartLeaderAsync(string? unixSocket = null, ControlToken? controlToken = null, bool allowTcpControl = false)
    {
        var host = await SurfaceHost.StartAsync(unixSocket, controlToken, allowTcpControl, runElector: true);
        await Poll.UntilAsync(() => Task.FromResult(host.State.Current.IsLeader), Deadline, "the in-memory candidate leads");
        return host;
    }

    private ControlToken WriteToken(string text)
    {
        var path = _dir.File("token");
        File.WriteAllText(path, text);
        return ControlToken.Read(path, out var error) ?? throw new InvalidOperationException(error);
    }
}
