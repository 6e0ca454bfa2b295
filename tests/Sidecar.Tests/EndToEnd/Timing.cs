namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// The short timing the end-to-end tests and the safety suite run daemons with, so that a
/// hand-over or a fault round takes seconds; the margins between the three are the defaults'.
/// </summary>
internal static class Timing
{
    /// <summary>How long a test waits for something that should come soon, on a loaded machine.</summary>
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    public static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(3);
    public static readonly TimeSpan RenewDeadline = TimeSpan.FromSeconds(2);
    public static readonly TimeSpan RetryPeriod = TimeSpan.FromMilliseconds(500);

    /// <summary>The daemon's flags for the timing above.</summary>
    public static readonly string[] FastTiming = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms"];
}
