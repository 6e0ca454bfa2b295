namespace LeaderSidecar.Election;

/// <summary>
/// Whether this candidate is fit to lead now — for example, whether its app's own health check
/// passes. The host feeds it; the elector asks it before campaigning and listens for changes.
/// </summary>
/// <remarks>
/// <para>
/// What a closed gate does (the rules live in <see cref="LeaderElector"/>, next to the election
/// they change): a follower lets fit candidates take a free or expired lease first, and campaigns
/// itself only when nobody has taken it for a further lease duration, because an unfit leader beats
/// no leader. A leader stands aside (steps down and releases) so that a fit candidate takes over —
/// at most once per <see cref="ElectionOptions.StandAsideInterval"/>, and not at all while it leads
/// because nobody fit took the lease, so a flapping check cannot make leadership flap.
/// </para>
/// <para>
/// The gate never touches safety: it only decides whether to try. Every acquisition is still a
/// compare-and-swap after the lease has expired or been released.
/// </para>
/// </remarks>
public sealed class CampaignGate
{
    private readonly Lock _gate = new();
    private bool _open;
    private string _reason;
    private Action<bool>? _changed;

    /// <param name="open">The first state; a host that has not checked anything yet starts closed.</param>
    /// <param name="reason">Why it starts closed; ignored when open.</param>
    public CampaignGate(bool open = true, string reason = "not checked yet")
    {
        _open = open;
        _reason = open ? "" : reason;
    }

    /// <summary>Whether this candidate is fit to lead.</summary>
    public bool IsOpen
    {
        get { lock (_gate) { return _open; } }
    }

    /// <summary>Why the gate is closed; empty while open.</summary>
    public string Reason
    {
        get { lock (_gate) { return _reason; } }
    }

    /// <summary>This candidate is fit to lead again.</summary>
    public void Open() => Set(true, "");

    /// <summary>This candidate is not fit to lead, for <paramref name="reason"/> (one line, for logs).</summary>
    public void Close(string reason) => Set(false, reason);

    /// <summary>Calls <paramref name="changed"/> with the new state after every change of <see cref="IsOpen"/>, on the caller's thread.</summary>
    internal void Subscribe(Action<bool> changed)
    {
        lock (_gate)
        {
            _changed += changed;
        }
    }

    internal void Unsubscribe(Action<bool> changed)
    {
        lock (_gate)
        {
            _changed -= changed;
        }
    }

    private void Set(bool open, string reason)
    {
        Action<bool>? changed;
        lock (_gate)
        {
            if (_open == open)
            {
                _reason = reason;
                return;
            }

            _open = open;
            _reason = reason;
            changed = _changed;
        }

        changed?.Invoke(open);
    }
}
