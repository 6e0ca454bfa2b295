using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Redis;

/// <summary>
/// The lease as a Redis hash: the Lease spec's fields under their Kubernetes names (times as
/// MicroTime, absent when null), plus <c>version</c> (a counter), <c>uid</c> (random, new when
/// the key is created again) and <c>nonce</c> (random, new with every write). <c>redis-cli
/// HGETALL</c> shows it; fields this version does not know are kept and ignored.
/// </summary>
/// <remarks>
/// The compare-and-swap token (<see cref="LeaseSnapshot.Version"/>) is <c>VERSION.FINGERPRINT</c>:
/// the counter, and the first 16 hex digits of a SHA-1 over every field above exactly as stored.
/// The update script computes the same fingerprint on the server and writes only when it matches,
/// so any change since the read loses the swap: a write by another candidate, and equally a hand
/// <c>HSET</c> that left the counter alone. The nonce keeps the fingerprint new on every write
/// even when a failover brings back a counter with other content.
/// </remarks>
internal static class RedisLeaseHash
{
    /// <summary>The longest uid accepted (ours are 36 characters); it shows in statuses and logs.</summary>
    public const int MaxUidLength = 64;

    /// <summary>The fields the fingerprint covers, in its order.</summary>
    public static readonly string[] FingerprintFields =
        ["holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions", "version", "uid", "nonce"];

    private const int FingerprintLength = 16;

    // The fingerprint in Lua, exactly as Fingerprint() computes it: "LENGTH:VALUE;" per field, an
    // absent field as empty, SHA-1 in lowercase hex, the first 16 digits. And the announcement:
    // "LENGTH:FIELD;LENGTH:VALUE;" for each of those fields present, which Announced() reads.
    private static readonly string LuaFunctions = $$"""
        local FIELDS = { {{string.Join(", ", FingerprintFields.Select(f => $"'{f}'"))}} }
        local function fingerprint(key)
          local values = redis.call('HMGET', key, unpack(FIELDS))
          local text = ''
          for i = 1, #FIELDS do
            local value = values[i] or ''
            text = text .. #value .. ':' .. value .. ';'
          end
          return string.sub(redis.sha1hex(text), 1, 16)
        end
        local function announce(key, channel)
          local values = redis.call('HMGET', key, unpack(FIELDS))
          local parts = {}
          for i = 1, #FIELDS do
            if values[i] then
              parts[#parts + 1] = #FIELDS[i] .. ':' .. FIELDS[i] .. ';' .. #values[i] .. ':' .. values[i] .. ';'
            end
          end
          redis.call('PUBLISH', channel, table.concat(parts))
        end

        """;

    /// <summary>
    /// Create-if-absent. KEYS[1]: the lease; ARGV[1]: its channel; ARGV[2]: the new uid;
    /// ARGV[3]: the nonce; ARGV[4…]: the record's fields and values. Returns 0 when the key exists,
    /// else the version ("1"); the new record is published on the channel.
    /// </summary>
    public static readonly RedisScript Create = new("create", LuaFunctions + """
        -- leader-sidecar: create the lease hash if absent, and tell the followers what it holds.
        if redis.call('EXISTS', KEYS[1]) == 1 then
          return 0
        end
        redis.call('HSET', KEYS[1], 'version', '1', 'uid', ARGV[2], 'nonce', ARGV[3], unpack(ARGV, 4))
        announce(KEYS[1], ARGV[1])
        return '1'
        """);

    /// <summary>
    /// Compare-and-swap. KEYS[1]: the lease; ARGV[1]: its channel; ARGV[2]: the fingerprint read;
    /// ARGV[3]: the new nonce; ARGV[4…]: the new record's fields and values (absent times are
    /// removed). Returns -1 when the key does not exist, 0 when its fingerprint differs, else the
    /// new version; the new record is published on the channel. Nothing is written before every check passed, and
    /// the one step that can fail (the counter at its maximum) comes first: a script is not
    /// rolled back.
    /// </summary>
    public static readonly RedisScript Update = new("update", LuaFunctions + """
        -- leader-sidecar: replace the lease hash if unchanged since it was read, and tell the followers what it holds.
        if redis.call('EXISTS', KEYS[1]) == 0 then
          return -1
        end
        if fingerprint(KEYS[1]) ~= ARGV[2] then
          return 0
        end
        redis.call('HINCRBY', KEYS[1], 'version', 1)
        redis.call('HDEL', KEYS[1], 'acquireTime', 'renewTime')
        redis.call('HSET', KEYS[1], 'nonce', ARGV[3], unpack(ARGV, 4))
        announce(KEYS[1], ARGV[1])
        return redis.call('HGET', KEYS[1], 'version')
        """);

    /// <summary>The record's fields and values, as <c>HSET</c> takes them; a null time is left out.</summary>
    public static List<string> Fields(LeaseRecord record)
    {
        var fields = new List<string>(10)
        {
            "holderIdentity", record.HolderIdentity,
            "leaseDurationSeconds", record.LeaseDurationSeconds.ToString(CultureInfo.InvariantCulture),
        };
        if (record.AcquireTime is { } acquired)
        {
            fields.AddRange(["acquireTime", MicroTimeConverter.Format(acquired)]);
        }

        if (record.RenewTime is { } renewed)
        {
            fields.AddRange(["renewTime", MicroTimeConverter.Format(renewed)]);
        }

        fields.AddRange(["leaseTransitions", record.LeaseTransitions.ToString(CultureInfo.InvariantCulture)]);
        return fields;
    }

    /// <summary>The snapshot a successful write produced: the stored strings are exactly the ones written.</summary>
    public static LeaseSnapshot Written(LeaseRecord record, string version, string uid, string nonce)
    {
        var stored = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var fields = Fields(record);
        for (var i = 0; i < fields.Count; i += 2)
        {
            stored[fields[i]] = Encoding.UTF8.GetBytes(fields[i + 1]);
        }

        stored["version"] = Encoding.UTF8.GetBytes(version);
        stored["uid"] = Encoding.UTF8.GetBytes(uid);
        stored["nonce"] = Encoding.UTF8.GetBytes(nonce);
        return new LeaseSnapshot(record, $"{version}.{Fingerprint(name => stored.GetValueOrDefault(name))}", uid);
    }

    /// <summary>
    /// The lease in an <c>HGETALL</c> reply (field, value, field, value…); <see langword="null"/> for
    /// an empty one (no such key). Anything that is not a record is <see cref="LeaseStoreFailure.Invalid"/>.
    /// </summary>
    public static LeaseSnapshot? Parse(string key, RespValue reply)
    {
        if (reply.Kind is not (RespKind.Array or RespKind.Map) || reply.Items.Count % 2 != 0)
        {
            throw Invalid(key, $"HGETALL answered {reply.Kind}");
        }

        if (reply.Items.Count == 0)
        {
            return null;
        }

        var stored = new Dictionary<string, ReadOnlyMemory<byte>>(StringComparer.Ordinal);
        for (var i = 0; i < reply.Items.Count; i += 2)
        {
            if (reply.Items[i].Kind is not (RespKind.BulkString or RespKind.SimpleString) || reply.Items[i + 1].Kind is not (RespKind.BulkString or RespKind.SimpleString))
            {
                throw Invalid(key, "HGETALL answered something other than strings");
            }

            stored[reply.Items[i].Text] = reply.Items[i + 1].Bytes;
        }

        return FromStored(key, stored);
    }

    /// <summary>
    /// The lease in a message the scripts published ("LENGTH:FIELD;LENGTH:VALUE;" for each field
    /// the fingerprint covers); <see langword="null"/> for a message in any other form (a daemon
    /// of an earlier version publishes only the version) or one that is not a lease record: the
    /// watch then reads the hash instead.
    /// </summary>
    public static LeaseSnapshot? Announced(string key, ReadOnlyMemory<byte> message)
    {
        var stored = new Dictionary<string, ReadOnlyMemory<byte>>(StringComparer.Ordinal);
        var rest = message;
        while (!rest.IsEmpty)
        {
            if (NextPart(ref rest) is not { } field || NextPart(ref rest) is not { } value || !stored.TryAdd(Encoding.UTF8.GetString(field.Span), value))
            {
                return null;
            }
        }

        try
        {
            return stored.Count == 0 ? null : FromStored(key, stored);
        }
        catch (LeaseStoreException)
        {
            return null;
        }
    }

    /// <summary>Takes one "LENGTH:BYTES;" off the front of <paramref name="rest"/>; <see langword="null"/> when it is not there.</summary>
    private static ReadOnlyMemory<byte>? NextPart(ref ReadOnlyMemory<byte> rest)
    {
        var colon = rest.Span.IndexOf((byte)':');
        if (colon is <= 0 or > 9 || !int.TryParse(rest.Span[..colon], NumberStyles.None, CultureInfo.InvariantCulture, out var length)
            || rest.Length < colon + 1 + length + 1 || rest.Span[colon + 1 + length] != (byte)';')
        {
            return null;
        }

        var part = rest.Slice(colon + 1, length);
        rest = rest[(colon + 1 + length + 1)..];
        return part;
    }

    private static LeaseSnapshot FromStored(string key, Dictionary<string, ReadOnlyMemory<byte>> stored)
    {
        string? Text(string field) => stored.TryGetValue(field, out var value) ? Encoding.UTF8.GetString(value.Span) : null;

        var version = Text("version") ?? throw Invalid(key, "it has no version field");
        if (!IsCounter(version))
        {
            throw Invalid(key, $"version is \"{MicroTimeConverter.Quote(version)}\", not a whole number from 1 up");
        }

        var uid = Text("uid") ?? throw Invalid(key, "it has no uid field");
        if (uid.Length is 0 or > MaxUidLength || !uid.All(c => c is > ' ' and < '\u007f'))
        {
            throw Invalid(key, $"uid \"{MicroTimeConverter.Quote(uid)}\" is not 1 to {MaxUidLength} printable ASCII characters");
        }

        var record = new LeaseRecord(
            Text("holderIdentity") ?? "",
            Integer(key, "leaseDurationSeconds", Text("leaseDurationSeconds")),
            Time(key, "acquireTime", Text("acquireTime")),
            Time(key, "renewTime", Text("renewTime")),
            Integer(key, "leaseTransitions", Text("leaseTransitions")));
        return new LeaseSnapshot(record, $"{version}.{Fingerprint(name => stored.TryGetValue(name, out var value) ? value : null)}", uid);
    }

    /// <summary>The counter and fingerprint in a version this store handed out; <see langword="null"/> for anything else.</summary>
    public static (string Counter, string Fingerprint)? SplitVersion(string version)
    {
        var dot = version.IndexOf('.', StringComparison.Ordinal);
        return dot > 0 && IsCounter(version[..dot]) && version.Length - dot - 1 == FingerprintLength
            ? (version[..dot], version[(dot + 1)..])
            : null;
    }

    /// <summary>The fingerprint of the stored fields (see the remarks); <paramref name="stored"/> gives a field's bytes or null when absent.</summary>
    [SuppressMessage("Security", "CA5350", Justification = "Not security: a change detector the server must compute too, and Redis scripts have only redis.sha1hex.")]
    internal static string Fingerprint(Func<string, ReadOnlyMemory<byte>?> stored)
    {
        var text = new List<byte>(256);
        foreach (var field in FingerprintFields)
        {
            var value = stored(field) ?? ReadOnlyMemory<byte>.Empty;
            text.AddRange(Encoding.ASCII.GetBytes(value.Length.ToString(CultureInfo.InvariantCulture) + ":"));
            text.AddRange(value.Span);
            text.Add((byte)';');
        }

        return Convert.ToHexStringLower(SHA1.HashData([.. text]))[..FingerprintLength];
    }

    /// <summary>A canonical decimal from 1 to <see cref="long.MaxValue"/>, as <c>HINCRBY</c> reads and writes it.</summary>
    internal static bool IsCounter(string text) =>
        text.Length is > 0 and <= 19 && text[0] is >= '1' and <= '9' && text.All(char.IsAsciiDigit) &&
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out _);

    private static int Integer(string key, string field, string? text)
    {
        if (text is null)
        {
            return 0;
        }

        return int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw Invalid(key, $"{field} is \"{MicroTimeConverter.Quote(text)}\", not a whole number");
    }

    private static DateTimeOffset? Time(string key, string field, string? text) =>
        text is null ? null
        : MicroTimeConverter.TryParse(text, out var time) ? time
        : throw Invalid(key, $"{field} is \"{MicroTimeConverter.Quote(text)}\", not a time like 2026-01-02T03:04:05.000000Z");

    private static LeaseStoreException Invalid(string key, string why) =>
        new(LeaseStoreFailure.Invalid, $"the hash at {key} is not a lease record: {why}");
}
