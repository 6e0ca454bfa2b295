using System.Text.Json;

namespace LeaderSidecar.Tests.Surfaces.Http;

/// <summary>
/// A client of <c>GET /watch</c> that reads the stream as <c>EventSource</c> does: blocks of lines
/// ended by an empty line. Each block is an event (<c>id:</c>, <c>data:</c>) or a comment (<c>: ping</c>).
/// </summary>
internal sealed class EventStream : IDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private EventStream(HttpResponseMessage response, StreamReader reader)
    {
        _response = response;
        _reader = reader;
    }

    public HttpResponseMessage Response => _response;

    /// <summary>Opens <c>/watch</c> on <paramref name="baseAddress"/>, optionally resuming after <paramref name="lastEventId"/>.</summary>
    public static async Task<EventStream> OpenAsync(HttpClient http, Uri baseAddress, string? lastEventId = null, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseAddress, "/watch"));
        if (lastEventId is not null)
        {
            request.Headers.Add("Last-Event-ID", lastEventId);
        }

        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        return new EventStream(response, new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken)));
    }

    /// <summary>The next block's lines, or null at the end of the stream.</summary>
    public async Task<IReadOnlyList<string>?> ReadBlockAsync(CancellationToken cancellationToken)
    {
        var lines = new List<string>();
        while (await _reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0)
            {
                return lines;
            }

            lines.Add(line);
        }

        return lines.Count == 0 ? null : lines;
    }

    /// <summary>The next event (comments skipped): its id and its JSON status; null at the end of the stream.</summary>
    public async Task<(long Id, JsonElement Status)?> ReadEventAsync(CancellationToken cancellationToken)
    {
        while (await ReadBlockAsync(cancellationToken) is { } block)
        {
            if (block.All(l => l.StartsWith(':')))
            {
                continue;
            }

            Assert.Equal(2, block.Count);
            Assert.StartsWith("id: ", block[0], StringComparison.Ordinal);
            Assert.StartsWith("data: ", block[1], StringComparison.Ordinal);
            using var json = JsonDocument.Parse(block[1]["data: ".Length..]);
            return (long.Parse(block[0]["id: ".Length..], System.Globalization.CultureInfo.InvariantCulture), json.RootElement.Clone());
        }

        return null;
    }

    public void Dispose()
    {
        _reader.Dispose();
        _response.Dispose();
    }
}
