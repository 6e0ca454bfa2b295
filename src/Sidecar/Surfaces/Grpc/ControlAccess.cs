using Grpc.Core;
using LeaderSidecar.Configuration;
using LeaderSidecar.Surfaces.Metrics;

namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>
/// Who may change leadership (<c>Resign</c>, <c>ConfirmStopped</c>). Reading the status is
/// harmless and open to every caller. A call over the unix socket is allowed: the socket is
/// owner-only, so the kernel already let only our own user in. Over TCP any local user can connect
/// to loopback, so such a call needs the control token, or the operator's explicit
/// <c>--allow-tcp-control</c> where loopback is private (a pod).
/// </summary>
internal sealed partial class ControlAccess(ControlToken? token, bool allowTcp, SidecarMetrics metrics, ILogger<ControlAccess> logger)
{
    private const string Scheme = "Bearer ";

    /// <summary>Throws PERMISSION_DENIED unless the caller of <paramref name="method"/> may change leadership.</summary>
    public void Demand(ServerCallContext context, string method)
    {
        if (Refusal(context) is { } reason)
        {
            LogRefused(logger, method, context.Peer, reason);
            metrics.ControlRefused(method);
            throw new RpcException(new global::Grpc.Core.Status(StatusCode.PermissionDenied, $"{method} changes leadership: {reason}"));
        }
    }

    private string? Refusal(ServerCallContext context)
    {
        // Kestrel gives every TCP connection its addresses; a unix socket connection has none.
        var connection = context.GetHttpContext().Connection;
        if ((connection.LocalIpAddress is null && connection.RemoteIpAddress is null) || allowTcp)
        {
            return null;
        }

        if (token is null)
        {
            return "over TCP it needs a control token (--control-token-file) or --allow-tcp-control; or use the unix socket";
        }

        var presented = context.RequestHeaders.GetValue("authorization");
        if (presented is null || !presented.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return "over TCP it needs the metadata \"authorization: Bearer TOKEN\" with the control token";
        }

        return token.Matches(presented[Scheme.Length..].Trim()) ? null : "the control token does not match";
    }

    /// <summary>Registers the gate; <paramref name="token"/> and <paramref name="allowTcp"/> come from the configuration.</summary>
    public static IServiceCollection Register(IServiceCollection services, ControlToken? token, bool allowTcp) =>
        services.AddSingleton(s => new ControlAccess(token, allowTcp, s.GetRequiredService<SidecarMetrics>(), s.GetRequiredService<ILogger<ControlAccess>>()));

    [LoggerMessage(EventId = 510, EventName = "ControlRefused", Level = LogLevel.Warning,
        Message = "Refused {Method} from {Peer}: {Reason}")]
    private static partial void LogRefused(ILogger logger, string method, string peer, string reason);
}
