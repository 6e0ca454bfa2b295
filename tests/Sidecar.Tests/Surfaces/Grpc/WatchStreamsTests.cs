using LeaderSidecar.Surfaces.Grpc;

namespace LeaderSidecar.Tests.Surfaces.Grpc;

public sealed class WatchStreamsTests
{
    [Fact]
    public void No_more_than_the_maximum_of_streams_is_open_at_once()
    {
        var streams = new WatchStreams();
        var open = Enumerable.Range(0, WatchStreams.MaxOpen).Select(_ => streams.TryOpen(WatchSurface.Grpc)).ToList();
        Assert.All(open, Assert.NotNull);

        Assert.Null(streams.TryOpen(WatchSurface.Grpc));
        Assert.Equal(WatchStreams.MaxOpen, streams.Count);

        open[0]!.Dispose();
        using var again = streams.TryOpen(WatchSurface.Grpc);
        Assert.NotNull(again);
    }
}
