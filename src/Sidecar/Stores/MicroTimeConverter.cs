using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace LeaderSidecar.Stores;

/// <summary>Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits.</summary>
internal sealed class MicroTimeConverter : JsonConverter<DateTimeOffset?>
{
    private const string FormatString = "yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'";

    // A valid time is 27 characters; an invalid one is quoted in the error only this far, so a
    // megabyte of junk in a time field never reaches a log line.
    private const int MaxQuoted = 40;

    public override DateTimeOffset? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return null;
        }

        var text = reader.GetString();
        return TryParse(text, out var value) ? value : throw new JsonException($"invalid time \"{Quote(text)}\"");
    }

    public override void Write(Utf8JsonWriter writer, DateTimeOffset? value, JsonSerializerOptions options)
    {
        if (value is { } time)
        {
            writer.WriteStringValue(Format(time));
        }
        else
        {
            writer.WriteNullValue();
        }
    }

    /// <summary>A time as MicroTime: <c>2026-11-25T02:04:12.123456Z</c> (sub-microsecond ticks dropped).</summary>
    public static string Format(DateTimeOffset time) => time.UtcDateTime.ToString(FormatString, CultureInfo.InvariantCulture);

    /// <summary>Reads a MicroTime (or any RFC 3339 time; no offset means UTC).</summary>
    public static bool TryParse(string? text, out DateTimeOffset time) =>
        DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out time);

    /// <summary>Server-provided text as it may appear in an error: at most 40 characters, no control characters.</summary>
    public static string Quote(string? text)
    {
        text ??= "";
        var kept = text.Length <= MaxQuoted ? text : string.Concat(text.AsSpan(0, MaxQuoted), "…");
        return string.Create(kept.Length, kept, static (span, source) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = char.IsControl(source[i]) ? ' ' : source[i];
            }
        });
    }
}
