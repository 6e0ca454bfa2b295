namespace LeaderSidecar.Bench;

/// <summary>The values of one figure over its trials, with nearest-rank percentiles.</summary>
internal sealed class Sample
{
    private readonly List<double> _sorted;

    public Sample(IEnumerable<double> values)
    {
        _sorted = [.. values.Order()];
    }

    public int Count => _sorted.Count;

    public double Median => Percentile(50);

    public double P95 => Percentile(95);

    public double P99 => Percentile(99);

    public double Max => _sorted.Count == 0 ? double.NaN : _sorted[^1];

    public double Min => _sorted.Count == 0 ? double.NaN : _sorted[0];

    /// <summary>Nearest rank: the smallest value with at least <paramref name="percent"/> % of the values at or below it.</summary>
    public double Percentile(double percent)
    {
        if (_sorted.Count == 0)
        {
            return double.NaN;
        }

        var rank = (int)Math.Ceiling(percent / 100 * _sorted.Count);
        return _sorted[Math.Clamp(rank - 1, 0, _sorted.Count - 1)];
    }
}
