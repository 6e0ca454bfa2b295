using System.Globalization;
using System.Net;

namespace LeaderSidecar.Configuration;

/// <summary>
/// Where a surface listens: <c>HOST:PORT</c> (an IP literal or <c>localhost</c>; IPv6 in brackets)
/// or, where a unix socket is allowed, <c>unix:/absolute/path</c>.
/// </summary>
internal sealed record ListenAddress(IPAddress? Ip, int Port, string? UnixSocketPath)
{
    public bool IsUnixSocket => UnixSocketPath is not null;

    public static bool TryParse(string text, bool allowUnixSocket, out ListenAddress? address, out string error)
    {
        address = null;
        error = "";
        if (text.StartsWith("unix:", StringComparison.Ordinal))
        {
            var path = text["unix:".Length..];
            if (!allowUnixSocket)
            {
                error = $"a unix socket is not supported here (\"{text}\"); use HOST:PORT";
                return false;
            }

            if (!Path.IsPathFullyQualified(path))
            {
                error = $"unix socket path must be absolute (\"{text}\")";
                return false;
            }

            address = new ListenAddress(null, 0, path);
            return true;
        }

        var colon = text.LastIndexOf(':');
        if (colon <= 0)
        {
            error = $"invalid address \"{text}\" (expected HOST:PORT such as 127.0.0.1:4040)";
            return false;
        }

        var host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }

        IPAddress? ip = host == "localhost" ? IPAddress.Loopback : null;
        if (ip is null && !IPAddress.TryParse(host, out ip))
        {
            error = $"invalid host \"{host}\" in address \"{text}\" (use an IP address or localhost)";
            return false;
        }

        if (!int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535)
        {
            error = $"invalid port in address \"{text}\" (0-65535)";
            return false;
        }

        address = new ListenAddress(ip, port, null);
        return true;
    }

    public override string ToString() => UnixSocketPath is { } path
        ? $"unix:{path}"
        : Ip!.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{Ip}]:{Port}" : $"{Ip}:{Port}";
}
