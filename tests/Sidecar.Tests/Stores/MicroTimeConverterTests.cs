using System.Text.Json;
using LeaderSidecar.Stores.Kubernetes;

namespace LeaderSidecar.Tests.Stores;

/// <summary>Kubernetes MicroTime in and out, and what an invalid one says about itself.</summary>
public sealed class MicroTimeConverterTests
{
    [Fact]
    public void A_time_is_written_with_six_fractional_digits_and_read_back()
    {
        var time = new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero).AddTicks(1_302_070);

        var json = JsonSerializer.Serialize(new LeaseObjectSpec { RenewTime = time }, LeaseJsonContext.Default.LeaseObjectSpec);

        Assert.Contains("\"renewTime\":\"2026-11-25T02:04:12.130207Z\"", json, StringComparison.Ordinal);
        Assert.Equal(time, JsonSerializer.Deserialize(json, LeaseJsonContext.Default.LeaseObjectSpec)!.RenewTime);
    }

    [Fact]
    public void An_invalid_time_is_quoted_only_briefly_and_on_one_line()
    {
        var junk = string.Concat(Enumerable.Repeat("not a time\\n", 100_000));

        var e = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize($"{{\"renewTime\":\"{junk}\"}}", LeaseJsonContext.Default.LeaseObjectSpec));

        Assert.StartsWith("invalid time \"not a time", e.Message, StringComparison.Ordinal);
        Assert.True(e.Message.Length < 200, $"message of {e.Message.Length} chars");
        Assert.DoesNotContain('\n', e.Message);
    }
}
