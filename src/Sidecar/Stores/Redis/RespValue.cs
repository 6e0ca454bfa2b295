using System.Globalization;
using System.Text;

namespace LeaderSidecar.Stores.Redis;

/// <summary>
/// The kinds of RESP value the store tells apart. RESP3's extra types fold onto these: a set is an
/// array, a boolean an integer, a double or big number a simple string, a verbatim string a bulk
/// string, a blob error an error.
/// </summary>
internal enum RespKind
{
    SimpleString,
    Error,
    Integer,
    BulkString,
    Array,

    /// <summary>A RESP3 map; <see cref="RespValue.Items"/> holds key, value, key, value…</summary>
    Map,

    /// <summary>A RESP3 push (out-of-band data such as a pub/sub message).</summary>
    Push,
    Null,
}

/// <summary>One reply (or part of one) read from a Redis server.</summary>
internal sealed class RespValue
{
    public static readonly RespValue Null = new(RespKind.Null, default, 0, []);

    private RespValue(RespKind kind, ReadOnlyMemory<byte> bytes, long integer, IReadOnlyList<RespValue> items)
    {
        Kind = kind;
        Bytes = bytes;
        Integer = integer;
        Items = items;
    }

    public RespKind Kind { get; }

    /// <summary>The bytes of a string or an error; empty otherwise.</summary>
    public ReadOnlyMemory<byte> Bytes { get; }

    /// <summary>The value of an integer.</summary>
    public long Integer { get; }

    /// <summary>The elements of an array, a map (keys and values alternating) or a push.</summary>
    public IReadOnlyList<RespValue> Items { get; }

    public bool IsError => Kind == RespKind.Error;

    /// <summary>A string or error as text (UTF-8), an integer in decimal; empty for anything else.</summary>
    public string Text => Kind switch
    {
        RespKind.Integer => Integer.ToString(CultureInfo.InvariantCulture),
        RespKind.SimpleString or RespKind.BulkString or RespKind.Error => Encoding.UTF8.GetString(Bytes.Span),
        _ => "",
    };

    /// <summary>The first word of an error (<c>WRONGTYPE</c>, <c>NOSCRIPT</c>, <c>ERR</c>…); empty for anything else.</summary>
    public string ErrorCode
    {
        get
        {
            if (!IsError)
            {
                return "";
            }

            var text = Text;
            var space = text.IndexOf(' ', StringComparison.Ordinal);
            return space < 0 ? text : text[..space];
        }
    }

    public static RespValue String(RespKind kind, ReadOnlyMemory<byte> bytes) => new(kind, bytes, 0, []);

    public static RespValue FromInteger(long value) => new(RespKind.Integer, default, value, []);

    public static RespValue Aggregate(RespKind kind, IReadOnlyList<RespValue> items) => new(kind, default, 0, items);

    public override string ToString() => Kind switch
    {
        RespKind.Array or RespKind.Map or RespKind.Push => $"{Kind}[{string.Join(", ", Items)}]",
        RespKind.Null => "(nil)",
        _ => $"{Kind}({Text})",
    };
}
