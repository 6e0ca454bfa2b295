using System.Buffers.Text;

namespace LeaderSidecar.Stores.Redis;

/// <summary>
/// How much one reply may make the reader hold. A lease hash is a few hundred bytes in 16
/// elements; the limits leave ample room for hand-added fields and long server error texts, and
/// stop a broken or hostile server (or a key filled by hand) from making the sidecar buffer
/// megabytes: a declared size over a limit is refused before anything is read or allocated.
/// </summary>
/// <param name="MaxBulkBytes">The longest string (bulk, verbatim, blob error).</param>
/// <param name="MaxElements">The most elements in one array, set or push (a map counts keys and values).</param>
/// <param name="MaxDepth">The deepest nesting of aggregates.</param>
/// <param name="MaxLineBytes">The longest line: a simple string, an error, a number.</param>
/// <param name="MaxReplyBytes">The most bytes one whole reply may take on the wire.</param>
internal sealed record RespLimits(int MaxBulkBytes, int MaxElements, int MaxDepth, int MaxLineBytes, int MaxReplyBytes)
{
    public static readonly RespLimits Default = new(64 * 1024, 1024, 4, 8 * 1024, 1024 * 1024);
}

/// <summary>The server sent something that is not RESP (not Redis, a TLS server spoken to in plain text, a broken stream).</summary>
internal class RespProtocolException(string message) : IOException(message);

/// <summary>A reply larger than <see cref="RespLimits"/> allow; nothing beyond its header was read.</summary>
internal sealed class RespLimitException(string message) : RespProtocolException(message);

/// <summary>
/// Reads RESP2 and RESP3 replies from a stream, one whole value at a time, within
/// <see cref="RespLimits"/>. Data may arrive in any pieces. After an exception the stream's
/// position is unknown: the connection must be closed.
/// </summary>
internal sealed class RespReader
{
    private readonly Stream _stream;
    private readonly RespLimits _limits;
    private readonly byte[] _buffer;
    private int _start;
    private int _end;
    private long _budget;

    public RespReader(Stream stream, RespLimits? limits = null)
    {
        _stream = stream;
        _limits = limits ?? RespLimits.Default;
        _buffer = new byte[Math.Max(4096, _limits.MaxLineBytes + 2)];
    }

    /// <summary>Reads the next complete value (an attribute ahead of it is read and dropped).</summary>
    /// <exception cref="IOException">The connection closed or failed, or the server broke the protocol or a limit.</exception>
    public async ValueTask<RespValue> ReadAsync(CancellationToken cancellationToken)
    {
        _budget = _limits.MaxReplyBytes;
        return await ReadValueAsync(0, atStart: true, cancellationToken);
    }

    private async ValueTask<RespValue> ReadValueAsync(int depth, bool atStart, CancellationToken cancellationToken)
    {
        while (true)
        {
            var (type, header) = await ReadLineAsync(atStart, cancellationToken);
            atStart = false;
            switch (type)
            {
                case (byte)'+':
                    return RespValue.String(RespKind.SimpleString, header);
                case (byte)'-':
                    return RespValue.String(RespKind.Error, header);
                case (byte)',':
                case (byte)'(':
                    return RespValue.String(RespKind.SimpleString, header);
                case (byte)':':
                    return RespValue.FromInteger(Number(type, header.Span));
                case (byte)'#':
                    return header.Span switch
                    {
                        [(byte)'t'] => RespValue.FromInteger(1),
                        [(byte)'f'] => RespValue.FromInteger(0),
                        _ => throw new RespProtocolException("a RESP boolean that is neither t nor f"),
                    };
                case (byte)'_':
                    return header.Length == 0 ? RespValue.Null : throw new RespProtocolException("a RESP null with content");
                case (byte)'$':
                case (byte)'!':
                case (byte)'=':
                    {
                        var length = Number(type, header.Span);
                        if (length == -1 && type == '$')
                        {
                            return RespValue.Null;
                        }

                        var bytes = await ReadBulkAsync(length, cancellationToken);
                        if (type == '=')
                        {
                            // Verbatim: a three-letter format and a colon ahead of the text.
                            return bytes.Length >= 4 && bytes.Span[3] == ':'
                                ? RespValue.String(RespKind.BulkString, bytes[4..])
                                : throw new RespProtocolException("a RESP verbatim string without its format");
                        }

                        return RespValue.String(type == '!' ? RespKind.Error : RespKind.BulkString, bytes);
                    }

                case (byte)'*':
                case (byte)'~':
                case (byte)'>':
                case (byte)'%':
                case (byte)'|':
                    {
                        var count = Number(type, header.Span);
                        if (count == -1 && type == '*')
                        {
                            return RespValue.Null;
                        }

                        var pairs = type is (byte)'%' or (byte)'|';
                        var elements = CheckCount(count, pairs, depth);
                        var items = new RespValue[elements];
                        for (var i = 0; i < elements; i++)
                        {
                            items[i] = await ReadValueAsync(depth + 1, atStart: false, cancellationToken);
                        }

                        switch (type)
                        {
                            case (byte)'|':
                                // An attribute describes the value after it; the store needs none.
                                continue;
                            case (byte)'%':
                                return RespValue.Aggregate(RespKind.Map, items);
                            case (byte)'>':
                                return RespValue.Aggregate(RespKind.Push, items);
                            default:
                                return RespValue.Aggregate(RespKind.Array, items);
                        }
                    }

                default:
                    throw new RespProtocolException($"the server did not answer in RESP (got byte 0x{type:x2}; is it Redis, and does it expect TLS?)");
            }
        }
    }

    private int CheckCount(long count, bool pairs, int depth)
    {
        if (count < 0)
        {
            throw new RespProtocolException($"a RESP aggregate of {count} elements");
        }

        var elements = pairs ? count * 2 : count;
        if (elements > _limits.MaxElements)
        {
            throw new RespLimitException($"a reply of {elements} elements, over the limit of {_limits.MaxElements}");
        }

        if (depth + 1 > _limits.MaxDepth)
        {
            throw new RespLimitException($"a reply nested deeper than {_limits.MaxDepth} levels");
        }

        return (int)elements;
    }

    private static long Number(byte type, ReadOnlySpan<byte> text) =>
        Utf8Parser.TryParse(text, out long value, out var consumed) && consumed == text.Length && text.Length > 0
            ? value
            : throw new RespProtocolException($"a RESP '{(char)type}' header that is not a number");

    /// <summary>The type byte and the rest of the next line (without CRLF), copied out of the buffer.</summary>
    private async ValueTask<(byte Type, ReadOnlyMemory<byte> Content)> ReadLineAsync(bool atStart, CancellationToken cancellationToken)
    {
        var scanned = 0;
        while (true)
        {
            var available = _buffer.AsSpan(_start, _end - _start);
            var lf = available[scanned..].IndexOf((byte)'\n');
            if (lf >= 0)
            {
                lf += scanned;
                if (lf == 0 || available[lf - 1] != '\r')
                {
                    throw new RespProtocolException("a RESP line that does not end in CRLF");
                }

                var line = available[..(lf - 1)];
                if (line.Length == 0)
                {
                    throw new RespProtocolException("an empty RESP line");
                }

                Spend(lf + 1);
                var content = line[1..].ToArray();
                var type = line[0];
                _start += lf + 1;
                return (type, content);
            }

            scanned = available.Length;
            if (available.Length >= _limits.MaxLineBytes + 2)
            {
                throw new RespLimitException($"a RESP line longer than {_limits.MaxLineBytes} bytes");
            }

            await FillAsync(atStart && available.Length == 0, cancellationToken);
        }
    }

    /// <summary>A length-prefixed string's bytes and the CRLF after them.</summary>
    private async ValueTask<ReadOnlyMemory<byte>> ReadBulkAsync(long length, CancellationToken cancellationToken)
    {
        if (length < 0)
        {
            throw new RespProtocolException($"a RESP string of {length} bytes");
        }

        if (length > _limits.MaxBulkBytes)
        {
            throw new RespLimitException($"a string of {length} bytes, over the limit of {_limits.MaxBulkBytes}");
        }

        Spend(length + 2);
        var bytes = new byte[length];
        var copied = 0;
        while (copied < length)
        {
            if (_start == _end)
            {
                await FillAsync(atStart: false, cancellationToken);
            }

            var chunk = (int)Math.Min(length - copied, _end - _start);
            _buffer.AsSpan(_start, chunk).CopyTo(bytes.AsSpan(copied));
            _start += chunk;
            copied += chunk;
        }

        while (_end - _start < 2)
        {
            await FillAsync(atStart: false, cancellationToken);
        }

        if (_buffer[_start] != '\r' || _buffer[_start + 1] != '\n')
        {
            throw new RespProtocolException("a RESP string longer than its declared length");
        }

        _start += 2;
        return bytes;
    }

    private void Spend(long bytes)
    {
        _budget -= bytes;
        if (_budget < 0)
        {
            throw new RespLimitException($"a reply larger than {_limits.MaxReplyBytes} bytes");
        }
    }

    /// <summary>Reads more into the buffer, first moving what is unread to its front.</summary>
    private async ValueTask FillAsync(bool atStart, CancellationToken cancellationToken)
    {
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }

        var read = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
        if (read == 0)
        {
            throw new EndOfStreamException(atStart ? "the server closed the connection" : "the server closed the connection in the middle of a reply");
        }

        _end += read;
    }
}
