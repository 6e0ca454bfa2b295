using System.Globalization;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>
/// The Lease annotation <c>leader-sidecar.io/hand-over-to: IDENTITY@TERM</c>, an operator's request
/// that the holder of term TERM (the Lease's <c>leaseTransitions</c>) hand the lease to IDENTITY.
/// Mapped to <see cref="LeaseSnapshot.HandOver"/>; kept by an update in the same term (a renew, a
/// release), dropped by one that starts a new term (an acquisition). client-go ignores it.
/// </summary>
internal static class HandOverAnnotation
{
    public const string Key = "leader-sidecar.io/hand-over-to";

    /// <summary>
    /// The request an annotation value makes, or <see langword="null"/> with <paramref name="problem"/>
    /// set when it is not <c>IDENTITY@TERM</c> (a non-empty identity of at most
    /// <see cref="LeaseRecord.MaxHolderIdentityLength"/> printable characters, a term of decimal digits).
    /// The identity may itself contain <c>@</c>: the term follows the last one.
    /// </summary>
    public static HandOverRequest? Parse(string value, out string? problem)
    {
        problem = null;
        var at = value.LastIndexOf('@');
        if (at <= 0)
        {
            problem = "expected IDENTITY@TERM";
            return null;
        }

        var identity = value[..at];
        if (identity.Length > LeaseRecord.MaxHolderIdentityLength || identity.Any(char.IsControl))
        {
            problem = "the identity is too long or has control characters";
            return null;
        }

        if (!int.TryParse(value.AsSpan(at + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var term))
        {
            problem = "the term after the last '@' is not a non-negative whole number";
            return null;
        }

        return new HandOverRequest(identity, term);
    }

    /// <summary>
    /// The annotations an update writes: those read, without the request when the update starts a
    /// new term (whoever acquires clears it, whether it was for them, for another or void).
    /// </summary>
    public static Dictionary<string, string>? ForUpdate(Dictionary<string, string>? annotations, LeaseRecord current, LeaseRecord next)
    {
        if (annotations is null || next.LeaseTransitions == current.LeaseTransitions || !annotations.ContainsKey(Key))
        {
            return annotations;
        }

        var kept = annotations.Where(a => a.Key != Key).ToDictionary();
        return kept.Count == 0 ? null : kept;
    }
}
