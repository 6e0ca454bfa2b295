using LeaderSidecar.Configuration;

namespace LeaderSidecar.Tests.Configuration;

/// <summary>--campaign, --campaign-delay and the --app-health-* flags, with their environment twins.</summary>
public sealed class WhoMayLeadFlagsTests
{
    private readonly Dictionary<string, string> _environment = [];

    [Fact]
    public void By_default_every_replica_campaigns_at_once_and_is_always_fit()
    {
        var options = Run("--lease-name", "a");

        Assert.True(options.Campaign);
        Assert.Equal(TimeSpan.Zero, options.CampaignDelay);
        Assert.Null(options.AppHealth);
        Assert.True(options.Election.Campaign);
        Assert.Equal(TimeSpan.Zero, options.Election.CampaignDelay);
    }

    [Fact]
    public void The_flags_reach_the_election_options()
    {
        var options = Run("--lease-name", "a", "--campaign-delay", "20s", "--app-health-url", "http://127.0.0.1:8080/healthz", "--app-health-threshold", "5", "--app-health-interval", "500ms");

        Assert.Equal(TimeSpan.FromSeconds(20), options.Election.CampaignDelay);
        Assert.Equal(new Uri("http://127.0.0.1:8080/healthz"), options.AppHealth!.Url);
        Assert.Equal(5, options.AppHealth.Threshold);
        Assert.Equal(TimeSpan.FromMilliseconds(500), options.AppHealth.Interval);
        Assert.Equal(TimeSpan.FromMilliseconds(500), options.AppHealth.Timeout);
    }

    [Fact]
    public void App_health_defaults_to_three_failures_one_retry_period_apart()
    {
        var options = Run("--lease-name", "a", "--retry-period", "3s", "--renew-deadline", "10s", "--app-health-url", "http://localhost:8080/healthz");

        Assert.Equal(3, options.AppHealth!.Threshold);
        Assert.Equal(TimeSpan.FromSeconds(3), options.AppHealth.Interval);
        Assert.Equal(TimeSpan.FromSeconds(1), options.AppHealth.Timeout);
    }

    [Fact]
    public void Environment_twins_work_and_a_pod_template_can_set_them()
    {
        _environment["LEADER_SIDECAR_CAMPAIGN"] = "false";
        Assert.False(Run("--lease-name", "a").Election.Campaign);

        _environment.Clear();
        _environment["LEADER_SIDECAR_CAMPAIGN_DELAY"] = "30s";
        _environment["LEADER_SIDECAR_APP_HEALTH_URL"] = "http://[::1]:9000/ready";
        var options = Run("--lease-name", "a");
        Assert.Equal(TimeSpan.FromSeconds(30), options.CampaignDelay);
        Assert.Equal(new Uri("http://[::1]:9000/ready"), options.AppHealth!.Url);
    }

    [Theory]
    [InlineData("is not an http:// URL (from --app-health-url)", "--app-health-url", "localhost:8080")]
    [InlineData("only http:// is supported", "--app-health-url", "https://127.0.0.1/healthz")]
    [InlineData("must name a loopback host", "--app-health-url", "http://10.0.0.7:8080/healthz")]
    [InlineData("must name a loopback host", "--app-health-url", "http://example.com/healthz")]
    [InlineData("app health URL must not carry credentials (http://127.0.0.1/healthz)", "--app-health-url", "http://user:secret@127.0.0.1/healthz")]
    [InlineData("app health threshold \"0\" must be a whole number from 1 to 1000", "--app-health-url", "http://127.0.0.1/", "--app-health-threshold", "0")]
    [InlineData("app health threshold \"3.5\" must be a whole number", "--app-health-url", "http://127.0.0.1/", "--app-health-threshold", "3.5")]
    [InlineData("--app-health-threshold needs --app-health-url", "--app-health-threshold", "2")]
    [InlineData("--app-health-interval needs --app-health-url", "--app-health-interval", "1s")]
    [InlineData("app health interval must be greater than zero", "--app-health-url", "http://127.0.0.1/", "--app-health-interval", "0s")]
    [InlineData("duration \"-1s\" must not be negative (from --campaign-delay)", "--campaign-delay", "-1s")]
    [InlineData("expected true or false, not \"maybe\" (from --campaign)", "--campaign=maybe")]
    [InlineData("--campaign=false never leads, so --app-health-url would never matter", "--campaign=false", "--app-health-url", "http://127.0.0.1/")]
    [InlineData("--campaign=false never leads, so --campaign-delay would never matter", "--campaign=false", "--campaign-delay", "5s")]
    [InlineData("--campaign=false never leads, so a COMMAND after -- would never matter", "--campaign=false", "--", "/bin/true")]
    public void Bad_input_is_one_line_naming_the_problem(string expected, params string[] args)
    {
        var result = CommandLine.Parse(["--lease-name", "a", .. args], Lookup);

        var invalid = Assert.IsType<ParseResult.Invalid>(result);
        Assert.Contains(expected, invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', invalid.Message);
        Assert.DoesNotContain("secret", invalid.Message, StringComparison.Ordinal);
    }

    private SidecarOptions Run(params string[] args) =>
        Assert.IsType<ParseResult.Run>(CommandLine.Parse(args, Lookup)).Options;

    private string? Lookup(string name) => _environment.GetValueOrDefault(name);
}
