using LeaderSidecar.Configuration;

namespace LeaderSidecar.Tests.Configuration;

public sealed class GoDurationTests
{
    [Theory]
    [InlineData("15s", 15_000)]
    [InlineData("500ms", 500)]
    [InlineData("1m30s", 90_000)]
    [InlineData("1.5h", 5_400_000)]
    [InlineData("2s500ms", 2_500)]
    [InlineData("0", 0)]
    [InlineData("1500000us", 1_500)]
    [InlineData("-2s", -2_000)]
    public void Reads_what_go_reads(string text, double milliseconds)
    {
        Assert.True(GoDuration.TryParse(text, out var value, out var error), error);
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), value);
    }

    [Theory]
    [InlineData("", "empty duration")]
    [InlineData("15", "missing unit")]
    [InlineData("5q", "unknown unit \"q\"")]
    [InlineData("s", "invalid duration")]
    [InlineData("1..5s", "invalid duration")]
    [InlineData("99999999999999h", "too large")]
    [InlineData("100000000000000000000h", "duration \"100000000000000000000h\" is too large")]
    [InlineData("99999999999999999999999999999999999999h", "too large")]
    [InlineData("256204779h", "too large")]
    [InlineData("256204778h49m", "too large")]
    [InlineData("-", "a sign alone is not a duration")]
    [InlineData("+", "a sign alone is not a duration")]
    [InlineData("1s\u0000", "unknown unit \"s\\u0000\"")]
    public void Refuses_what_go_refuses_with_a_reason(string text, string reason)
    {
        Assert.False(GoDuration.TryParse(text, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(15_000, "15s")]
    [InlineData(500, "500ms")]
    [InlineData(90_000, "1m30s")]
    [InlineData(3_600_000, "1h")]
    [InlineData(-1_000, "-1s")]
    [InlineData(-90_000, "-1m30s")]
    public void Formats_round_values_like_go(double milliseconds, string expected) =>
        Assert.Equal(expected, GoDuration.Format(TimeSpan.FromMilliseconds(milliseconds)));
}
