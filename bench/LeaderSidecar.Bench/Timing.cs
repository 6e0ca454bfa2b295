using System.Globalization;

namespace LeaderSidecar.Bench;

/// <summary>Election timing, given to the daemons as flags and to the reference elector as is.</summary>
internal sealed record Timing(TimeSpan LeaseDuration, TimeSpan RenewDeadline, TimeSpan RetryPeriod)
{
    /// <summary>The defaults of leader-sidecar and of client-go: 15 s, 10 s, 2 s.</summary>
    public static Timing Default { get; } = new(TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(2));

    /// <summary>The end-to-end tests' fast timing, for <c>--quick</c> runs only.</summary>
    public static Timing Fast { get; } = new(TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(500));

    public string[] Args =>
    [
        "--lease-duration", Go(LeaseDuration), "--renew-deadline", Go(RenewDeadline), "--retry-period", Go(RetryPeriod),
    ];

    public override string ToString() =>
        $"lease duration {Go(LeaseDuration)}, renew deadline {Go(RenewDeadline)}, retry period {Go(RetryPeriod)}";

    private static string Go(TimeSpan span) => string.Create(CultureInfo.InvariantCulture, $"{(long)span.TotalMilliseconds}ms");
}
