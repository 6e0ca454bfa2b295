using Grpc.AspNetCore.Server;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace LeaderSidecar.Surfaces;

/// <summary>
/// How much a client may send, on every listener. Every request the surfaces serve is tiny: a GET
/// with a short query, or a gRPC message of a few bytes. Far smaller limits than Kestrel's defaults
/// keep what one request can make the daemon hold small. (How many connections and streams there
/// may be is set where the listeners are made.)
/// </summary>
internal static class RequestLimits
{
    /// <summary>The largest gRPC request message; ours hold at most a duration.</summary>
    public const int MaxGrpcMessageBytes = 4 * 1024;

    /// <summary>
    /// The largest request body: no HTTP endpoint reads one, and a unary gRPC request is one
    /// message. Above <see cref="MaxGrpcMessageBytes"/>, so that gRPC's own clearer refusal
    /// (RESOURCE_EXHAUSTED) comes first.
    /// </summary>
    public const long MaxRequestBodyBytes = 8 * 1024;

    /// <summary>The longest request line (method, path and query), such as <c>GET /leader?wait=30s HTTP/1.1</c>.</summary>
    public const int MaxRequestLineBytes = 4 * 1024;

    /// <summary>All request headers together; curl, the kubelet, Prometheus and gRPC clients send well under 1 KiB.</summary>
    public const int MaxRequestHeadersBytes = 8 * 1024;

    public const int MaxRequestHeaderCount = 50;

    public static IServiceCollection AddRequestLimits(this IServiceCollection services)
    {
        services.Configure<KestrelServerOptions>(kestrel =>
        {
            var limits = kestrel.Limits;
            limits.MaxRequestBodySize = MaxRequestBodyBytes;
            limits.MaxRequestLineSize = MaxRequestLineBytes;
            limits.MaxRequestHeadersTotalSize = MaxRequestHeadersBytes;
            limits.MaxRequestHeaderCount = MaxRequestHeaderCount;
            limits.Http2.MaxRequestHeaderFieldSize = MaxRequestHeadersBytes;
        });
        services.Configure<GrpcServiceOptions>(grpc => grpc.MaxReceiveMessageSize = MaxGrpcMessageBytes);
        return services;
    }
}
