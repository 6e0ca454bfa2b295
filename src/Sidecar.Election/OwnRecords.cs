using System.Diagnostics.CodeAnalysis;

namespace LeaderSidecar.Election;

/// <summary>
/// The one rule for "is this record ours", used by acquire, renew, release and the watch.
/// </summary>
/// <remarks>
/// <para>
/// A record naming this identity is this process's claim only if this process wrote it: the very
/// version its last acknowledged write produced, or exactly the record of an attempt whose answer
/// it never saw (the write timed out but landed: nobody wrote after it, or the store would hold
/// something else). Every other record naming us — a previous process of the same identity, a hand
/// edit, a restored backup — is someone's claim that may still be running, and is waited out.
/// </para>
/// <para>
/// Every attempt since the last acknowledged write is remembered, not only the latest: a write
/// that landed unanswered followed by a second attempt (conflicting with the first) must still
/// recognise the first. Once a write is acknowledged, no earlier attempt can land any more (each
/// compared a version that is gone), so the list starts over.
/// </para>
/// <para>
/// A leader's watch also replays its own earlier records of the current term (the echo of a write
/// arrives after the answer to the next one; a resumed watch starts at an old version). Those are
/// not news and not a contradiction: <see cref="IsEarlierInTerm"/> recognises them so that the
/// leader neither believes them (its published term would go back) nor answers each with a
/// verifying renew (whose own echo would then arrive late, and so on). They never count as ours for
/// taking the lease: only the current version is ever compared and swapped.
/// </para>
/// </remarks>
internal sealed class OwnRecords(string identity)
{
    /// <summary>Attempts remembered between two acknowledged writes; older ones cost at most a lease duration.</summary>
    internal const int MaxAttempts = 16;

    private readonly Queue<LeaseRecord> _attempts = new();

    /// <summary>The snapshot our last acknowledged write produced (a claim or a release).</summary>
    public LeaseSnapshot? LastWrite { get; private set; }

    /// <summary>Remember <paramref name="record"/> before it is written: its answer may be lost.</summary>
    public void Attempting(LeaseRecord record)
    {
        if (_attempts.Count == MaxAttempts)
        {
            _attempts.Dequeue();
        }

        _attempts.Enqueue(record);
    }

    /// <summary>The store acknowledged a write of ours at <paramref name="lease"/>.</summary>
    public void Written(LeaseSnapshot lease)
    {
        LastWrite = lease;
        _attempts.Clear();
    }

    /// <summary>Whether <paramref name="lease"/> is exactly the version our last acknowledged write produced.</summary>
    public bool IsLastWrite(LeaseSnapshot? lease) =>
        lease is not null && LastWrite is { } own && own.Uid == lease.Uid && own.Version == lease.Version;

    /// <summary>
    /// Whether <paramref name="lease"/> is this process's claim, as the remarks define it. While
    /// <paramref name="claiming"/> (this process leads and its claim has not run out), exactly the
    /// record of our last write at another version is ours too: the store changed only metadata (a
    /// label edit bumps a Kubernetes <c>resourceVersion</c>), and nobody else can have taken a lease
    /// whose holder still claims. Once the claim has ended, the same content could be a restored
    /// backup written over a successor, so it is waited out.
    /// </summary>
    public bool IsOurs([NotNullWhen(true)] LeaseSnapshot? lease, bool claiming) =>
        lease is not null
        && lease.Record.HolderIdentity == identity
        && (IsLastWrite(lease)
            || IsUnansweredAttempt(lease)
            || (claiming && LastWrite is { } own && own.Uid == lease.Uid && own.Record == lease.Record));

    /// <summary>Whether <paramref name="lease"/> is the record of an attempt whose answer we never saw.</summary>
    public bool IsUnansweredAttempt(LeaseSnapshot? lease) =>
        lease is not null && lease.Record.HolderIdentity == identity && _attempts.Contains(lease.Record);

    /// <summary>
    /// Whether <paramref name="lease"/> is an earlier record of the claim our last write made: same
    /// lease object, same holder, same term, same acquisition, another version.
    /// </summary>
    public bool IsEarlierInTerm(LeaseSnapshot? lease) =>
        lease is not null
        && LastWrite is { Record.IsReleased: false } own
        && !IsLastWrite(lease)
        && lease.Uid == own.Uid
        && lease.Record.HolderIdentity == identity
        && lease.Record.LeaseTransitions == own.Record.LeaseTransitions
        && lease.Record.AcquireTime == own.Record.AcquireTime;
}
