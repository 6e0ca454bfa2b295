using Google.Protobuf.WellKnownTypes;
using Leadership.V1;
using LeaderSidecar.Election;

namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>The gRPC shape of a <see cref="LeadershipStatus"/> (<c>leadership.v1.Status</c>).</summary>
internal static class StatusMessage
{
    public static Status From(LeadershipStatus status, bool draining, TimeProvider time)
    {
        var message = new Status
        {
            Identity = SurfaceText.Bound(status.Identity),
            Role = status.Role switch
            {
                Election.Role.Leader => Leadership.V1.Role.Leader,
                Election.Role.Follower => Leadership.V1.Role.Follower,
                _ => Leadership.V1.Role.Unknown,
            },
            Leader = status.IsLeader,
            Holder = SurfaceText.Bound(status.Holder),
            LeaseUid = SurfaceText.Bound(status.LeaseUid),
            LeaseName = SurfaceText.Bound(status.LeaseName),
            LeaseNamespace = SurfaceText.Bound(status.LeaseNamespace),
            Revision = status.Revision,
            Draining = draining,
        };

        if (status.Term is { } term)
        {
            message.Term = term;
        }

        if (status.ValidUntil is { } validUntil)
        {
            message.ValidUntil = Timestamp.FromDateTimeOffset(validUntil);
        }

        if (status.LastObservedAt is { } observed)
        {
            message.ObservedAge = Duration.FromTimeSpan(time.GetElapsedTime(observed));
        }

        return message;
    }
}
