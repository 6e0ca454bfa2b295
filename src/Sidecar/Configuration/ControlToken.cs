using System.Security.Cryptography;
using System.Text;

namespace LeaderSidecar.Configuration;

/// <summary>
/// The shared secret a gRPC client presents (<c>authorization: Bearer TOKEN</c>) to change
/// leadership over TCP. Only its SHA-256 is kept, and it never prints: a record holding it
/// (<see cref="SidecarOptions"/>) may be logged or shown in a test failure.
/// </summary>
internal sealed class ControlToken
{
    /// <summary>More than any generated token needs; a bigger file is a mistake, not a token.</summary>
    public const int MaxLength = 4096;

    private readonly byte[] _hash;

    private ControlToken(byte[] hash) => _hash = hash;

    /// <summary>
    /// Reads the token from <paramref name="path"/>: the file's text without surrounding
    /// whitespace (so <c>echo TOKEN &gt; file</c> works), visible ASCII only, since it travels in an
    /// HTTP/2 header.
    /// </summary>
    /// <returns>The token, or null and <paramref name="error"/> naming the problem (never the token).</returns>
    public static ControlToken? Read(string path, out string error) =>
        ReadText(path, out error) is { } text ? new ControlToken(Hash(text)) : null;

    /// <summary>
    /// The token's text, checked as <see cref="Read"/> checks it: for a client that presents it
    /// (<c>leader-sidecar resign</c>). Null and <paramref name="error"/> when it is not a token.
    /// </summary>
    public static string? ReadText(string path, out string error)
    {
        error = "";
        string text;
        try
        {
            // Reads at most one byte past the limit, so a device or a huge file cannot stall the start.
            using var file = File.OpenRead(path);
            var buffer = new byte[MaxLength + 1];
            var length = 0;
            int read;
            while (length < buffer.Length && (read = file.Read(buffer, length, buffer.Length - length)) > 0)
            {
                length += read;
            }

            if (length > MaxLength)
            {
                error = $"control token file {path} is larger than {MaxLength} bytes";
                return null;
            }

            text = Encoding.UTF8.GetString(buffer, 0, length).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"cannot read control token file {path}: {e.Message}";
            return null;
        }

        if (text.Length == 0)
        {
            error = $"control token file {path} is empty";
            return null;
        }

        if (!text.All(c => c is > ' ' and < '\u007f'))
        {
            error = $"control token file {path} must hold one token of visible ASCII characters";
            return null;
        }

        return text;
    }

    /// <summary>Whether <paramref name="presented"/> is this token, in time independent of where they differ.</summary>
    public bool Matches(string presented) =>
        presented.Length <= MaxLength && CryptographicOperations.FixedTimeEquals(_hash, Hash(presented));

    public override string ToString() => "(control token)";

    // Comparing hashes also hides the token's length from the comparison's timing.
    private static byte[] Hash(string text) => SHA256.HashData(Encoding.UTF8.GetBytes(text));
}
