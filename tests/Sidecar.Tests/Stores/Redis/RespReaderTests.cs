using System.Text;
using LeaderSidecar.Stores.Redis;

namespace LeaderSidecar.Tests.Stores.Redis;

/// <summary>The RESP reader: RESP2 and RESP3 replies, in any pieces, within its limits.</summary>
public sealed class RespReaderTests
{
    private static readonly RespLimits Small = new(MaxBulkBytes: 16, MaxElements: 4, MaxDepth: 2, MaxLineBytes: 32, MaxReplyBytes: 256);

    [Theory]
    [InlineData("+OK\r\n", "SimpleString", "OK")]
    [InlineData("-WRONGTYPE Operation against a key\r\n", "Error", "WRONGTYPE Operation against a key")]
    [InlineData(":-42\r\n", "Integer", "-42")]
    [InlineData("$5\r\nhello\r\n", "BulkString", "hello")]
    [InlineData("$0\r\n\r\n", "BulkString", "")]
    [InlineData("$4\r\na\r\nb\r\n", "BulkString", "a\r\nb")]
    [InlineData("$-1\r\n", "Null", "")]
    [InlineData("*-1\r\n", "Null", "")]
    [InlineData("_\r\n", "Null", "")]
    [InlineData("#t\r\n", "Integer", "1")]
    [InlineData(",3.14\r\n", "SimpleString", "3.14")]
    [InlineData("(12345678901234567890\r\n", "SimpleString", "12345678901234567890")]
    [InlineData("=8\r\ntxt:Some\r\n", "BulkString", "Some")]
    [InlineData("!9\r\nERR oops!\r\n", "Error", "ERR oops!")]
    public void Single_values_of_both_protocol_versions(string wire, string kind, string text)
    {
        var value = Read(wire);

        Assert.Equal(kind, value.Kind.ToString());
        Assert.Equal(text, value.Text);
    }

    [Fact]
    public void An_hgetall_reply_is_an_array_in_resp2_and_a_map_in_resp3()
    {
        var resp2 = Read("*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n");
        var resp3 = Read("%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n");

        Assert.Equal(RespKind.Array, resp2.Kind);
        Assert.Equal(RespKind.Map, resp3.Kind);
        Assert.Equal(["a", "1", "b", "2"], resp2.Items.Select(i => i.Text));
        Assert.Equal(["a", "1", "b", "2"], resp3.Items.Select(i => i.Text));
    }

    [Fact]
    public void A_pubsub_message_is_an_array_in_resp2_and_a_push_in_resp3_and_an_attribute_is_skipped()
    {
        var resp2 = Read("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\n7\r\n");
        var resp3 = Read("|1\r\n+key\r\n+value\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\n7\r\n");

        Assert.Equal(["message", "ch", "7"], resp2.Items.Select(i => i.Text));
        Assert.Equal(RespKind.Push, resp3.Kind);
        Assert.Equal(["message", "ch", "7"], resp3.Items.Select(i => i.Text));
    }

    [Fact]
    public async Task Replies_arriving_a_byte_at_a_time_read_the_same_and_in_order()
    {
        var wire = "+OK\r\n*2\r\n$3\r\nfoo\r\n:7\r\n-ERR no\r\n";
        var reader = new RespReader(new TrickleStream(Encoding.UTF8.GetBytes(wire)));

        Assert.Equal("OK", (await reader.ReadAsync(CancellationToken.None)).Text);
        Assert.Equal(["foo", "7"], (await reader.ReadAsync(CancellationToken.None)).Items.Select(i => i.Text));
        Assert.Equal("ERR no", (await reader.ReadAsync(CancellationToken.None)).Text);
        Assert.Equal("ERR", Read("-ERR no\r\n").ErrorCode);
    }

    [Theory]
    [InlineData("$17\r\n", "string of 17 bytes")]
    [InlineData("$9999999999999\r\n", "string of 9999999999999 bytes")]
    [InlineData("*5\r\n", "5 elements")]
    [InlineData("%3\r\n", "6 elements")]
    [InlineData("*1\r\n*1\r\n*1\r\n:1\r\n", "nested deeper")]
    [InlineData("+0123456789012345678901234567890123456789", "line longer")]
    public void A_reply_over_a_limit_is_refused_from_its_header_alone(string wire, string problem)
    {
        // Only the header is on the wire: refusing must not wait for (or allocate) the rest.
        var failure = Assert.Throws<RespLimitException>(() => Read(wire, Small));

        Assert.Contains(problem, failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_reply_over_the_total_budget_is_refused()
    {
        var wire = new StringBuilder("*4\r\n");
        for (var i = 0; i < 4; i++)
        {
            wire.Append("$16\r\n").Append('x', 16).Append("\r\n");
        }

        Assert.Throws<RespLimitException>(() => Read(wire.ToString(), Small with { MaxReplyBytes = 60 }));
    }

    [Theory]
    [InlineData("?\r\n")]
    [InlineData("HTTP/1.1 400 Bad Request\r\n")]
    [InlineData("\u0015\u0003\u0001\u0000\u0002\u0002\n")]
    [InlineData(":12a\r\n")]
    [InlineData("$3\r\nabcd\r\n")]
    [InlineData("+OK\n")]
    [InlineData("#x\r\n")]
    [InlineData("$-2\r\n")]
    public void Something_that_is_not_resp_is_a_protocol_error(string wire)
    {
        var failure = Assert.ThrowsAny<RespProtocolException>(() => Read(wire));

        Assert.IsNotType<RespLimitException>(failure);
    }

    [Theory]
    [InlineData("")]
    [InlineData("$5\r\nhel")]
    [InlineData("*2\r\n:1\r\n")]
    public void A_connection_closed_before_a_whole_reply_is_an_io_error(string wire)
    {
        Assert.Throws<EndOfStreamException>(() => Read(wire));
    }

    [Fact]
    public void A_command_is_an_array_of_bulk_strings_in_utf8()
    {
        var bytes = RespCommand.Encode(["HSET", "k", "holderIdentity", "pöd"]);

        Assert.Equal("*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$14\r\nholderIdentity\r\n$4\r\npöd\r\n", Encoding.UTF8.GetString(bytes));
    }

    private static RespValue Read(string wire, RespLimits? limits = null) =>
        new RespReader(new MemoryStream(Encoding.Latin1.GetBytes(wire)), limits).ReadAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();

    /// <summary>A stream that hands out one byte per read, as a slow network might.</summary>
    private sealed class TrickleStream(byte[] data) : MemoryStream(data)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(1, buffer.Length)], cancellationToken);
    }
}
