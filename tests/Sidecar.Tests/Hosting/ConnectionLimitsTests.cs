using LeaderSidecar.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace LeaderSidecar.Tests.Hosting;

public sealed class ConnectionLimitsTests
{
    [Fact]
    public void Plenty_of_descriptors_give_the_default_per_listener()
    {
        var limits = ConnectionLimits.For(listeners: 3, descriptorLimit: 1_048_576, open: 30);

        Assert.Equal(ConnectionLimits.DefaultPerListener, limits.PerListener);
        Assert.False(limits.Starved);
        Assert.Equal(1_048_576 - ConnectionLimits.Reserve, limits.DescriptorCeiling);
    }

    [Fact]
    public void Listeners_share_what_is_left_after_the_open_descriptors_and_the_reserve()
    {
        var limits = ConnectionLimits.For(listeners: 2, descriptorLimit: 1024, open: 30);

        Assert.Equal((1024 - 30 - ConnectionLimits.Reserve) / 2, limits.PerListener);
        Assert.True((limits.PerListener * 2) + 30 + ConnectionLimits.Reserve <= 1024);
        Assert.False(limits.Starved);
    }

    [Fact]
    public void A_limit_too_low_for_the_reserve_leaves_the_minimum_and_says_so()
    {
        var limits = ConnectionLimits.For(listeners: 3, descriptorLimit: 256, open: 200);

        Assert.Equal(ConnectionLimits.MinimumPerListener, limits.PerListener);
        Assert.True(limits.Starved);
    }

    [Fact]
    public void An_unknown_descriptor_limit_gives_the_default_and_no_ceiling()
    {
        var limits = ConnectionLimits.For(listeners: 2, descriptorLimit: null, open: null);

        Assert.Equal(ConnectionLimits.DefaultPerListener, limits.PerListener);
        Assert.Null(limits.DescriptorCeiling);
    }

    [Fact]
    public void An_unlimited_descriptor_limit_does_not_overflow()
    {
        var limits = ConnectionLimits.For(listeners: 2, descriptorLimit: ulong.MaxValue, open: 10);

        Assert.Equal(ConnectionLimits.DefaultPerListener, limits.PerListener);
        Assert.Equal(long.MaxValue - ConnectionLimits.Reserve, limits.DescriptorCeiling);
    }

    [Fact]
    public void Kestrel_takes_the_limits()
    {
        var kestrel = new KestrelServerOptions();

        new ConnectionLimits { PerListener = 100 }.Apply(kestrel);

        Assert.Equal(100, kestrel.Limits.MaxConcurrentConnections);
        Assert.Equal(0, kestrel.Limits.MaxConcurrentUpgradedConnections);
        Assert.Equal(ConnectionLimits.KeepAliveTimeout, kestrel.Limits.KeepAliveTimeout);
        Assert.Equal(ConnectionLimits.RequestHeadersTimeout, kestrel.Limits.RequestHeadersTimeout);
        Assert.Equal(ConnectionLimits.MaxStreamsPerConnection, kestrel.Limits.Http2.MaxStreamsPerConnection);
        Assert.True(kestrel.Limits.MaxRequestBufferSize >= kestrel.Limits.MaxRequestHeadersTotalSize);
        Assert.True(kestrel.Limits.MaxRequestBufferSize >= kestrel.Limits.MaxRequestLineSize);
    }
}
