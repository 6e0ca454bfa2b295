using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using LeaderSidecar.Election;
using LeaderSidecar.Stores.Etcd.Protocol;

namespace LeaderSidecar.Stores.Etcd;

/// <summary>
/// The lease as one etcd v3 key, <c>PREFIX NAMESPACE/NAME</c>, holding the record as JSON. The
/// version is the key's <c>mod_revision</c> and the uid its <c>create_revision</c>; create is a
/// Txn on <c>create_revision == 0</c>, update a Txn on <c>mod_revision == version</c>, so a lost
/// compare is a conflict. Followers read the key, then watch it from the revision after the read.
/// </summary>
/// <remarks>
/// <para>
/// What etcd guarantees: every Txn and every default (linearizable) Range goes through the raft
/// leader and a quorum, so a compare-and-swap that succeeded is durable on a majority and seen by
/// every later read; revisions only grow, and a watch delivers a key's events in revision order,
/// each once, from the revision it asked for. A member cut off from the quorum would keep an open
/// watch silent; the watch asks for a leader (<c>hasleader</c>), so such a member ends the stream
/// instead, and requests to it fail as unavailable and move to the next endpoint.
/// </para>
/// <para>
/// What etcd can lose, and this store cannot hide: a single-member cluster that loses its disk
/// starts empty (the lease is gone, the next create gets a new uid, and revisions restart low); a
/// snapshot restore rewinds revisions, so a version number can come back with other content. The
/// election core compares content as well as versions, and every renewal writes a new renewTime,
/// so a rewound store is still seen to change. A compacted revision ends the watch with a failure:
/// the elector polls and the next watch reads first.
/// </para>
/// <para>
/// Every value read is bounded: gRPC refuses answers over <see cref="EtcdConnection.MaxMessageBytes"/>
/// and a value over <see cref="MaxValueBytes"/> is an invalid record, never parsed or logged whole.
/// </para>
/// </remarks>
internal sealed partial class EtcdLeaseStore : ILeaseStore, IDisposable
{
    /// <summary>The largest value read as a record; a real one is about 200 bytes.</summary>
    public const int MaxValueBytes = 64 * 1024;

    private readonly EtcdConnection _connection;
    private readonly ByteString _key;
    private readonly string _keyText;
    private readonly TimeSpan _requestTimeout;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    /// <param name="requestTimeout">The longest the watch's first read and its open may take (the elector's request timeout).</param>
    public EtcdLeaseStore(EtcdConnection connection, string prefix, string @namespace, string name, TimeSpan requestTimeout, TimeProvider time, ILogger<EtcdLeaseStore> logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(requestTimeout, TimeSpan.Zero);
        _connection = connection;
        _keyText = $"{prefix}{@namespace}/{name}";
        _key = ByteString.CopyFromUtf8(_keyText);
        _requestTimeout = requestTimeout;
        _time = time;
        _logger = logger;
        Description = $"etcd key {_keyText} at {connection.Address}";
    }

    public string Description { get; }

    /// <summary>The key the lease lives at.</summary>
    public string Key => _keyText;

    public async Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken) =>
        (await ReadAsync(cancellationToken)).Lease;

    public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
    {
        var value = Encode(record);
        var txn = new TxnRequest
        {
            Compare = { new Compare { Key = _key, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 } },
            Success = { new RequestOp { RequestPut = new PutRequest { Key = _key, Value = value } } },
        };
        var answer = await _connection.CallAsync("lease create", idempotent: false, (invoker, headers, token) =>
            new KV.KVClient(invoker).TxnAsync(txn, headers, cancellationToken: token).ResponseAsync, cancellationToken);
        if (!answer.Succeeded)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Conflict, "lease create: the key already exists");
        }

        var revision = Revision(answer.Header.Revision);
        return new LeaseSnapshot(Decode(value.Span), revision, revision);
    }

    public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
    {
        if (!long.TryParse(current.Version, NumberStyles.None, CultureInfo.InvariantCulture, out var version))
        {
            // Not a revision this store handed out: nothing can be at that version.
            throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"lease update: version \"{EtcdConnection.Shorten(current.Version)}\" is not an etcd revision");
        }

        var value = Encode(record);
        var txn = new TxnRequest
        {
            Compare = { new Compare { Key = _key, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = version } },
            Success = { new RequestOp { RequestPut = new PutRequest { Key = _key, Value = value, PrevKv = true } } },
            Failure = { new RequestOp { RequestRange = new RangeRequest { Key = _key, CountOnly = true } } },
        };
        var answer = await _connection.CallAsync("lease update", idempotent: false, (invoker, headers, token) =>
            new KV.KVClient(invoker).TxnAsync(txn, headers, cancellationToken: token).ResponseAsync, cancellationToken);
        if (!answer.Succeeded)
        {
            var exists = answer.Responses.Count > 0 && answer.Responses[0].ResponseRange?.Count > 0;
            throw exists
                ? new LeaseStoreException(LeaseStoreFailure.Conflict, $"lease update: the key changed after revision {version}")
                : new LeaseStoreException(LeaseStoreFailure.NotFound, "lease update: the key does not exist");
        }

        var uid = answer.Responses.Count > 0 && answer.Responses[0].ResponsePut?.PrevKv is { } previous ? Revision(previous.CreateRevision) : current.Uid;
        return new LeaseSnapshot(Decode(value.Span), Revision(answer.Header.Revision), uid);
    }

    public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // Read first, then watch from the next revision: nothing between the two is missed, and
        // the first item is the state the watch continues from. Both steps end within the request
        // timeout, and nothing is yielded until the watch is open, so the elector polls meanwhile.
        var (state, revision) = await WithinRequestTimeoutAsync("lease read", ReadAsync, cancellationToken);
        await foreach (var lease in WatchFromAsync(state, revision, cancellationToken))
        {
            yield return lease;
        }
    }

    /// <summary>
    /// The watch after a read of <paramref name="state"/> at <paramref name="revision"/>: that state
    /// first, once the watch from the next revision is open, then every change.
    /// </summary>
    internal async IAsyncEnumerable<LeaseSnapshot?> WatchFromAsync(LeaseSnapshot? state, long revision, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var call = await WithinRequestTimeoutAsync("lease watch", timeout => OpenWatchAsync(revision + 1, timeout, cancellationToken), cancellationToken);
        using (call)
        {
            yield return state;

            while (await NextAsync(call, cancellationToken) is { } answer)
            {
                if (answer.CompactRevision != 0)
                {
                    LogWatchCompacted(_logger, revision, answer.CompactRevision);
                    throw new LeaseStoreException(LeaseStoreFailure.Unavailable, $"lease watch: revisions before {answer.CompactRevision} were compacted; reading again");
                }

                if (answer.Canceled)
                {
                    throw CancelReason(answer.CancelReason);
                }

                foreach (var change in answer.Events)
                {
                    if (change.Kv is not { } kv || kv.Key != _key)
                    {
                        continue;
                    }

                    revision = kv.ModRevision;
                    yield return change.Type == Event.Types.EventType.Delete ? null : Snapshot(kv);
                }
            }

            // The member ended the stream (shutting down): the caller reconnects and reads again.
        }
    }

    public void Dispose() => _connection.Dispose();

    /// <summary>A linearizable read of the key: the lease (null when absent) and the store revision it was read at.</summary>
    private async Task<(LeaseSnapshot? Lease, long Revision)> ReadAsync(CancellationToken cancellationToken)
    {
        var answer = await _connection.CallAsync("lease read", idempotent: true, (invoker, headers, token) =>
            new KV.KVClient(invoker).RangeAsync(new RangeRequest { Key = _key }, headers, cancellationToken: token).ResponseAsync, cancellationToken);
        var kv = answer.Kvs.Count > 0 ? answer.Kvs[0] : null;
        return (kv is null ? null : Snapshot(kv), answer.Header.Revision);
    }

    /// <summary>Opens a watch of the key from <paramref name="startRevision"/>, returning once etcd confirmed it.</summary>
    private Task<AsyncDuplexStreamingCall<WatchRequest, WatchResponse>> OpenWatchAsync(long startRevision, CancellationToken openTimeout, CancellationToken streamCancellation) =>
        _connection.CallAsync("lease watch", idempotent: true, async (invoker, headers, token) =>
        {
            // Without a leader the member would keep the stream open and silent: ask it to end it.
            headers.Add("hasleader", "true");
            var call = new Watch.WatchClient(invoker).Watch(headers, cancellationToken: streamCancellation);
            try
            {
                await call.RequestStream.WriteAsync(new WatchRequest { CreateRequest = new WatchCreateRequest { Key = _key, StartRevision = startRevision } }, token);
                if (!await call.ResponseStream.MoveNext(token))
                {
                    throw new LeaseStoreException(LeaseStoreFailure.Unavailable, "lease watch: the stream ended before the watch was created");
                }

                var created = call.ResponseStream.Current;
                if (created.Canceled || created.CompactRevision != 0)
                {
                    throw created.CompactRevision != 0
                        ? new LeaseStoreException(LeaseStoreFailure.Unavailable, $"lease watch: revision {startRevision} was compacted")
                        : CancelReason(created.CancelReason);
                }

                if (!created.Created)
                {
                    throw new LeaseStoreException(LeaseStoreFailure.Invalid, "lease watch: etcd answered the create with something else");
                }

                return call;
            }
            catch
            {
                call.Dispose();
                throw;
            }
        }, openTimeout);

    /// <summary>The next answer on the watch stream; null when the member ended it.</summary>
    private static async Task<WatchResponse?> NextAsync(AsyncDuplexStreamingCall<WatchRequest, WatchResponse> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call.ResponseStream.MoveNext(cancellationToken) ? call.ResponseStream.Current : null;
        }
        catch (Exception e) when (EtcdConnection.Failure("lease watch", e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>A watch etcd cancelled: no leader, no permission, or another reason in its words.</summary>
    private static LeaseStoreException CancelReason(string reason) =>
        reason.Contains("no leader", StringComparison.Ordinal) ? EtcdConnection.FromStatus("lease watch", StatusCode.Unavailable, reason)
        : reason.Contains("permission denied", StringComparison.Ordinal) ? EtcdConnection.FromStatus("lease watch", StatusCode.PermissionDenied, reason)
        : reason.Contains("auth", StringComparison.Ordinal) ? EtcdConnection.FromStatus("lease watch", StatusCode.Unauthenticated, reason)
        : EtcdConnection.FromStatus("lease watch", StatusCode.Unavailable, reason.Length > 0 ? reason : "cancelled by etcd");

    /// <summary>Runs <paramref name="request"/> with the request timeout; running out of it is a <see cref="LeaseStoreFailure.Timeout"/>.</summary>
    private Task<T> WithinRequestTimeoutAsync<T>(string what, Func<CancellationToken, Task<T>> request, CancellationToken cancellationToken) =>
        RequestTimeout.WithinAsync(what, _requestTimeout, _time, request, cancellationToken);

    private static LeaseSnapshot Snapshot(KeyValue kv) =>
        new(Decode(kv.Value.Span), Revision(kv.ModRevision), Revision(kv.CreateRevision));

    private static string Revision(long revision) => revision.ToString(CultureInfo.InvariantCulture);

    private static ByteString Encode(LeaseRecord record) => ByteString.CopyFrom(JsonSerializer.SerializeToUtf8Bytes(
        new EtcdLeaseDocument
        {
            HolderIdentity = record.HolderIdentity,
            LeaseDurationSeconds = record.LeaseDurationSeconds,
            AcquireTime = record.AcquireTime,
            RenewTime = record.RenewTime,
            LeaseTransitions = record.LeaseTransitions,
        },
        EtcdJsonContext.Default.EtcdLeaseDocument));

    /// <summary>The record in a value; anything else (too large, not JSON, not an object) is <see cref="LeaseStoreFailure.Invalid"/>.</summary>
    private static LeaseRecord Decode(ReadOnlySpan<byte> value)
    {
        if (value.Length > MaxValueBytes)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"the value at the key is {value.Length} bytes, over the {MaxValueBytes}-byte limit of a lease record");
        }

        EtcdLeaseDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(value, EtcdJsonContext.Default.EtcdLeaseDocument);
        }
        catch (JsonException e)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"the value at the key is not a lease record ({e.Message}), starting \"{Preview(value)}\"", e);
        }

        if (document is null)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, "the value at the key is not a lease record (null)");
        }

        return new LeaseRecord(
            document.HolderIdentity ?? "",
            document.LeaseDurationSeconds ?? 0,
            document.AcquireTime,
            document.RenewTime,
            document.LeaseTransitions ?? 0);
    }

    // The first few characters of a bad value, enough to recognize it, never the whole of it.
    private static string Preview(ReadOnlySpan<byte> value) =>
        EtcdConnection.Shorten(Encoding.UTF8.GetString(value[..Math.Min(value.Length, 40)]));

    [LoggerMessage(EventId = 702, EventName = "EtcdWatchCompacted", Level = LogLevel.Information,
        Message = "Lease watch after revision {Revision} was compacted (oldest kept {CompactRevision}); the next watch reads first")]
    private static partial void LogWatchCompacted(ILogger logger, long revision, long compactRevision);
}
