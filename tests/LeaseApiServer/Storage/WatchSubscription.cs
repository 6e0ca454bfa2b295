using System.Threading.Channels;

namespace LeaderSidecar.Testing.LeaseApi.Storage;

/// <summary>
/// An open watch's inbox. The store writes every change of the namespace into it under its lock, so the
/// events arrive in revision order with no gap after the ones replayed when the watch started.
/// </summary>
internal sealed class WatchSubscription : IDisposable
{
    private readonly Channel<WatchSignal> _signals = Channel.CreateUnbounded<WatchSignal>(
        new UnboundedChannelOptions { SingleReader = true });

    private readonly Action<WatchSubscription> _unsubscribe;

    public WatchSubscription(string namespaceName, long startRevision, Action<WatchSubscription> unsubscribe)
    {
        Namespace = namespaceName;
        LastRevision = startRevision;
        _unsubscribe = unsubscribe;
    }

    public string Namespace { get; }

    /// <summary>The newest revision this watch has taken in; a bookmark may claim no more than this.</summary>
    public long LastRevision { get; set; }

    public ChannelReader<WatchSignal> Signals => _signals.Reader;

    public void Post(WatchSignal signal) => _signals.Writer.TryWrite(signal);

    public void Dispose()
    {
        _unsubscribe(this);
        _signals.Writer.TryComplete();
    }
}

/// <summary>How a watch starts: replayed or synthesized events plus the inbox, or "too old".</summary>
internal sealed record WatchStart(
    WatchSubscription? Subscription,
    IReadOnlyList<WatchEvent> InitialEvents,
    long RequestedRevision,
    long CompactedRevision)
{
    public bool Expired => Subscription is null;
}
