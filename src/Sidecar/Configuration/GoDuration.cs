using System.Globalization;

namespace LeaderSidecar.Configuration;

/// <summary>
/// Durations written the way Go's <c>time.ParseDuration</c> reads them (<c>15s</c>, <c>500ms</c>,
/// <c>1m30s</c>, <c>1.5h</c>), because that is how client-go flags and Kubernetes users write them.
/// </summary>
internal static class GoDuration
{
    private static readonly (string Unit, long Ticks)[] Units =
    [
        ("ns", 0), // sub-tick: accepted, rounds to zero ticks per nanosecond below
        ("us", TimeSpan.TicksPerMicrosecond),
        ("µs", TimeSpan.TicksPerMicrosecond),
        ("μs", TimeSpan.TicksPerMicrosecond),
        ("ms", TimeSpan.TicksPerMillisecond),
        ("s", TimeSpan.TicksPerSecond),
        ("m", TimeSpan.TicksPerMinute),
        ("h", TimeSpan.TicksPerHour),
    ];

    /// <summary>Parses <paramref name="text"/>; on failure returns false and a reason.</summary>
    public static bool TryParse(string text, out TimeSpan value, out string error)
    {
        value = TimeSpan.Zero;
        error = "";
        var s = text.Trim();
        if (s.Length == 0)
        {
            error = "empty duration";
            return false;
        }

        var negative = s[0] == '-';
        if (s[0] is '-' or '+')
        {
            s = s[1..];
        }

        if (s.Length == 0)
        {
            error = $"invalid duration {Quoted(text)} (a sign alone is not a duration)";
            return false;
        }

        if (s == "0")
        {
            return true;
        }

        decimal totalTicks = 0;
        while (s.Length > 0)
        {
            var numberEnd = 0;
            while (numberEnd < s.Length && (char.IsAsciiDigit(s[numberEnd]) || s[numberEnd] == '.'))
            {
                numberEnd++;
            }

            var digits = s[..numberEnd];
            if (numberEnd == 0 || !decimal.TryParse(digits, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                // Well-formed digits that decimal cannot hold are a number too large, not a typo.
                error = digits.Count(c => c == '.') <= 1 && digits.Any(char.IsAsciiDigit)
                    ? $"duration {Quoted(text)} is too large"
                    : $"invalid duration {Quoted(text)} (expected a number with a unit, such as 15s or 500ms)";
                return false;
            }

            s = s[numberEnd..];
            var unitEnd = 0;
            while (unitEnd < s.Length && !char.IsAsciiDigit(s[unitEnd]) && s[unitEnd] != '.')
            {
                unitEnd++;
            }

            var unit = s[..unitEnd];
            s = s[unitEnd..];
            if (unit.Length == 0)
            {
                error = $"missing unit in duration {Quoted(text)} (use ns, us, ms, s, m or h)";
                return false;
            }

            var match = Array.FindIndex(Units, u => u.Unit == unit);
            if (match < 0)
            {
                error = $"unknown unit {Quoted(unit)} in duration {Quoted(text)} (use ns, us, ms, s, m or h)";
                return false;
            }

            // Checked before adding or multiplying: decimal itself overflows (an exception) near 7.9e28.
            var room = TimeSpan.MaxValue.Ticks - totalTicks;
            var fits = unit == "ns" ? number / 100 <= room : number <= room / Units[match].Ticks;
            if (!fits)
            {
                error = $"duration {Quoted(text)} is too large";
                return false;
            }

            totalTicks += unit == "ns" ? number / 100 : number * Units[match].Ticks;
        }

        value = TimeSpan.FromTicks((long)totalTicks);
        if (negative)
        {
            value = -value;
        }

        return true;
    }

    /// <summary>Formats like Go would print a round value: <c>15s</c>, <c>500ms</c>, <c>1m30s</c>.</summary>
    public static string Format(TimeSpan value)
    {
        if (value == TimeSpan.Zero)
        {
            return "0s";
        }

        if (value < TimeSpan.Zero)
        {
            // TimeSpan.MinValue has no positive twin; a tick less is the same to a reader.
            return "-" + Format(value == TimeSpan.MinValue ? TimeSpan.MaxValue : value.Negate());
        }

        if (value.Ticks % TimeSpan.TicksPerSecond != 0 && value < TimeSpan.FromSeconds(1))
        {
            return $"{value.TotalMilliseconds.ToString("0.###", CultureInfo.InvariantCulture)}ms";
        }

        var text = "";
        if (value.Hours + (value.Days * 24) > 0)
        {
            text += $"{(int)value.TotalHours}h";
        }

        if (value.Minutes > 0)
        {
            text += $"{value.Minutes}m";
        }

        var seconds = value.Seconds + (value.Ticks % TimeSpan.TicksPerSecond / (double)TimeSpan.TicksPerSecond);
        if (seconds > 0)
        {
            text += $"{seconds.ToString("0.###", CultureInfo.InvariantCulture)}s";
        }

        return text;
    }

    private static string Quoted(string text) => CommandLine.Quote(text);
}
