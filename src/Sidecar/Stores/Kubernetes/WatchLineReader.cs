using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>
/// Splits a watch stream into its lines (one JSON event each) without ever holding more than
/// <c>maxLineBytes</c> + 1 bytes: a server or proxy that sends a line with no end must not take
/// all memory, so an over-long line fails the watch instead of being buffered.
/// </summary>
internal sealed class WatchLineReader(Stream stream, int maxLineBytes)
{
    private const int InitialBuffer = 16 * 1024;

    private byte[] _buffer = new byte[Math.Min(InitialBuffer, maxLineBytes + 1)];
    private int _start;
    private int _end;

    /// <summary>
    /// The next line without its newline, valid until the next call; <see langword="null"/> at the
    /// end of the stream (a last line without a newline is returned as it is).
    /// </summary>
    /// <exception cref="LeaseStoreException"><see cref="LeaseStoreFailure.Invalid"/>: a line longer than the limit.</exception>
    public async ValueTask<ReadOnlyMemory<byte>?> ReadLineAsync(CancellationToken cancellationToken)
    {
        var scanned = _start;
        while (true)
        {
            var newline = _buffer.AsSpan(scanned, _end - scanned).IndexOf((byte)'\n');
            if (newline >= 0)
            {
                var length = scanned + newline - _start;
                if (length > maxLineBytes)
                {
                    throw TooLong(length);
                }

                var line = _buffer.AsMemory(_start, length);
                _start += length + 1;
                return line;
            }

            if (_end - _start > maxLineBytes)
            {
                throw TooLong(_end - _start);
            }

            scanned = _end;
            if (_end == _buffer.Length)
            {
                MakeRoom(ref scanned);
            }

            var read = await stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
            if (read == 0)
            {
                if (_end == _start)
                {
                    return null;
                }

                var last = _buffer.AsMemory(_start, _end - _start);
                _start = _end;
                return last;
            }

            _end += read;
        }
    }

    /// <summary>Moves the unread bytes to the front, or grows the buffer up to one byte past the limit.</summary>
    private void MakeRoom(ref int scanned)
    {
        var pending = _end - _start;
        if (_start > 0)
        {
            _buffer.AsSpan(_start, pending).CopyTo(_buffer);
        }
        else
        {
            var grown = new byte[(int)Math.Min((long)_buffer.Length * 2, (long)maxLineBytes + 1)];
            _buffer.AsSpan(0, pending).CopyTo(grown);
            _buffer = grown;
        }

        scanned -= _start;
        _start = 0;
        _end = pending;
    }

    private LeaseStoreException TooLong(long bytes) => new(
        LeaseStoreFailure.Invalid,
        $"lease watch line longer than the {maxLineBytes}-byte limit (at least {bytes} bytes); ending the watch");
}
