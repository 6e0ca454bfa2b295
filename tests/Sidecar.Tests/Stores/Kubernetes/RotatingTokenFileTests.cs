using LeaderSidecar.Stores.Kubernetes;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The service-account token source: re-read on a period and after a refusal, never judged by the link's metadata.</summary>
public sealed class RotatingTokenFileTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly FakeTimeProvider _time = new();
    private readonly ProjectedVolume _volume;

    public RotatingTokenFileTests()
    {
        _volume = new ProjectedVolume(_dir.Path);
        _volume.Write(new Dictionary<string, string> { ["token"] = "first\n" });
    }

    private static async Task<string?> TokenAsync(RotatingTokenFile tokens) =>
        (await tokens.GetAuthenticationHeaderAsync(CancellationToken.None)).Parameter;

    [Fact]
    public async Task A_swapped_data_link_is_read_once_the_refresh_period_has_passed()
    {
        var tokens = new RotatingTokenFile(_dir.File("token"), _time);
        Assert.Equal("first", await TokenAsync(tokens));

        _volume.Write(new Dictionary<string, string> { ["token"] = "second\n" });
        _time.Advance(RotatingTokenFile.RefreshPeriod - TimeSpan.FromMilliseconds(1));
        Assert.Equal("first", await TokenAsync(tokens));

        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal("second", await TokenAsync(tokens));
    }

    [Fact]
    public async Task A_refused_token_is_read_again_at_once()
    {
        var tokens = new RotatingTokenFile(_dir.File("token"), _time);
        Assert.Equal("first", await TokenAsync(tokens));
        _volume.Write(new Dictionary<string, string> { ["token"] = "second\n" });

        tokens.Reject();

        Assert.Equal("second", await TokenAsync(tokens));
    }

    [Fact]
    public async Task A_token_that_cannot_be_read_keeps_the_previous_one_and_is_tried_again()
    {
        var tokens = new RotatingTokenFile(_dir.File("token"), _time);
        Assert.Equal("first", await TokenAsync(tokens));
        File.Delete(_dir.File("..data"));
        _time.Advance(RotatingTokenFile.RefreshPeriod);

        Assert.Equal("first", await TokenAsync(tokens));

        _volume.Write(new Dictionary<string, string> { ["token"] = "second\n" });
        Assert.Equal("second", await TokenAsync(tokens));
    }

    public void Dispose() => _dir.Dispose();
}
