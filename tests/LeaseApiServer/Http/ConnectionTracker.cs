using System.Collections.Concurrent;
using LeaderSidecar.Testing.LeaseApi.Faults;
using Microsoft.AspNetCore.Connections;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// Kestrel connection middleware that knows every open connection, so a "restart" can cut them all (idle
/// keep-alive ones too, as a real restart does) and <see cref="FaultInjector.RefuseConnections"/> can turn
/// new ones away.
/// </summary>
internal sealed class ConnectionTracker(FaultInjector faults)
{
    private readonly ConcurrentDictionary<string, ConnectionContext> _open = new(StringComparer.Ordinal);

    public int OpenConnections => _open.Count;

    public ConnectionDelegate Track(ConnectionDelegate next) => async connection =>
    {
        if (faults.RefuseConnections)
        {
            connection.Abort(new ConnectionAbortedException("the test server refuses connections"));
            return;
        }

        _open[connection.ConnectionId] = connection;
        try
        {
            await next(connection);
        }
        finally
        {
            _open.TryRemove(connection.ConnectionId, out _);
        }
    };

    public void AbortAll()
    {
        foreach (var connection in _open.Values)
        {
            connection.Abort(new ConnectionAbortedException("the test server restarted"));
        }
    }
}
