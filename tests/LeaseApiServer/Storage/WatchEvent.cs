namespace LeaderSidecar.Testing.LeaseApi.Storage;

internal enum WatchEventType
{
    Added,
    Modified,
    Deleted,
}

/// <summary>One change in the store's history. A DELETED event carries the revision of the deletion.</summary>
internal sealed record WatchEvent(WatchEventType Type, Lease Lease)
{
    public long Revision => Lease.Revision;
}

/// <summary>What an open watch can be told: a change, "send a bookmark now", or "end now".</summary>
internal abstract record WatchSignal
{
    public sealed record Change(WatchEvent Event) : WatchSignal;

    public sealed record Bookmark : WatchSignal;

    /// <param name="Expire">End with an ERROR 410 event first, as when etcd compacts under a watch.</param>
    /// <param name="Abort">Reset the connection instead of ending the response cleanly.</param>
    public sealed record Drop(bool Expire, bool Abort) : WatchSignal;
}
