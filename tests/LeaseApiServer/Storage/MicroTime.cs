using System.Globalization;
using System.Text;

namespace LeaderSidecar.Testing.LeaseApi.Storage;

/// <summary>
/// Kubernetes <c>metav1.MicroTime</c>: RFC 3339 with exactly six fractional digits. The real server parses it
/// with Go's <c>time.Parse(RFC3339Micro, s)</c>, which insists on exactly six digits (no fraction, or nine
/// digits, is a 400); this class reproduces that strictness and Go's error text.
/// </summary>
internal static class MicroTime
{
    public const string GoLayout = "2006-01-02T15:04:05.000000Z07:00";

    public static string Format(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    /// <summary><c>metav1.Time</c> (creationTimestamp, managedFields time): whole seconds.</summary>
    public static string FormatSeconds(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    public static DateTimeOffset Truncate(DateTimeOffset time) =>
        new(time.UtcTicks - (time.UtcTicks % 10), TimeSpan.Zero);

    public static LeaseSpec Truncate(LeaseSpec spec) => spec with
    {
        AcquireTime = spec.AcquireTime is { } acquire ? Truncate(acquire) : null,
        RenewTime = spec.RenewTime is { } renew ? Truncate(renew) : null,
    };

    /// <summary>Parses like Go's <c>time.Parse(GoLayout, value)</c>; on failure gives Go's message.</summary>
    public static bool TryParse(string value, out DateTimeOffset time, out string? error)
    {
        time = default;
        var rest = value;
        string? failedAt = null;
        int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, micros = 0;
        var offset = TimeSpan.Zero;

        var parsed =
            (Digits(ref rest, 4, out year) || Fail("2006", out failedAt))
            && (Literal(ref rest, "-") || Fail("-", out failedAt))
            && (Digits(ref rest, 2, out month) || Fail("01", out failedAt))
            && (Literal(ref rest, "-") || Fail("-", out failedAt))
            && (Digits(ref rest, 2, out day) || Fail("02", out failedAt))
            && (Literal(ref rest, "T") || Fail("T", out failedAt))
            && (Hour(ref rest, out hour) || Fail("15", out failedAt))
            && (Literal(ref rest, ":") || Fail(":", out failedAt))
            && (Digits(ref rest, 2, out minute) || Fail("04", out failedAt))
            && (Literal(ref rest, ":") || Fail(":", out failedAt))
            && (Digits(ref rest, 2, out second) || Fail("05", out failedAt))
            && (Fraction(ref rest, out micros) || Fail(".000000", out failedAt))
            && (Zone(ref rest, out offset) || Fail("Z07:00", out failedAt));

        if (!parsed)
        {
            error = $"parsing time {GoQuote(value)} as {GoQuote(GoLayout)}: cannot parse {GoQuote(rest)} as {GoQuote(failedAt!)}";
            return false;
        }

        error = rest.Length > 0 ? $": extra text: {GoQuote(rest)}"
            : month is < 1 or > 12 ? ": month out of range"
            : hour > 23 ? ": hour out of range"
            : minute > 59 ? ": minute out of range"
            : second > 59 ? ": second out of range"
            : day < 1 || day > DateTime.DaysInMonth(Math.Max(year, 1), month) ? ": day out of range"
            : null;
        if (error is not null)
        {
            error = $"parsing time {GoQuote(value)}{error}";
            return false;
        }

        time = new DateTimeOffset(year, month, day, hour, minute, second, offset)
            .AddTicks(micros * 10L)
            .ToUniversalTime();
        return true;
    }

    /// <summary>Go's <c>strconv.Quote</c> for the printable text these messages contain.</summary>
    public static string GoQuote(string text)
    {
        var quoted = new StringBuilder("\"");
        foreach (var c in text)
        {
            quoted.Append(c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                < ' ' => $"\\x{(int)c:x2}",
                _ => c.ToString(),
            });
        }

        return quoted.Append('"').ToString();
    }

    private static bool Fail(string layoutElement, out string? failedAt)
    {
        failedAt = layoutElement;
        return false;
    }

    private static bool Literal(ref string rest, string literal)
    {
        if (!rest.StartsWith(literal, StringComparison.Ordinal))
        {
            return false;
        }

        rest = rest[literal.Length..];
        return true;
    }

    private static bool Digits(ref string rest, int count, out int number)
    {
        number = 0;
        if (rest.Length < count || !rest[..count].All(char.IsAsciiDigit))
        {
            return false;
        }

        number = int.Parse(rest[..count], CultureInfo.InvariantCulture);
        rest = rest[count..];
        return true;
    }

    // Go reads the "15" hour with one or two digits.
    private static bool Hour(ref string rest, out int hour) =>
        Digits(ref rest, rest.Length >= 2 && char.IsAsciiDigit(rest[1]) ? 2 : 1, out hour);

    private static bool Fraction(ref string rest, out int micros)
    {
        micros = 0;
        if (rest.Length < 7 || (rest[0] != '.' && rest[0] != ',') || !rest[1..7].All(char.IsAsciiDigit))
        {
            return false;
        }

        micros = int.Parse(rest[1..7], CultureInfo.InvariantCulture);
        rest = rest[7..];
        return true;
    }

    private static bool Zone(ref string rest, out TimeSpan offset)
    {
        offset = TimeSpan.Zero;
        if (rest.StartsWith('Z'))
        {
            rest = rest[1..];
            return true;
        }

        if (rest.Length < 6 || (rest[0] != '+' && rest[0] != '-') || rest[3] != ':'
            || !char.IsAsciiDigit(rest[1]) || !char.IsAsciiDigit(rest[2])
            || !char.IsAsciiDigit(rest[4]) || !char.IsAsciiDigit(rest[5]))
        {
            return false;
        }

        var hours = int.Parse(rest[1..3], CultureInfo.InvariantCulture);
        var minutes = int.Parse(rest[4..6], CultureInfo.InvariantCulture);
        if (hours > 14 || minutes > 59)
        {
            return false; // beyond what DateTimeOffset holds; no real client sends it
        }

        offset = new TimeSpan(hours, minutes, 0) * (rest[0] == '-' ? -1 : 1);
        rest = rest[6..];
        return true;
    }
}
