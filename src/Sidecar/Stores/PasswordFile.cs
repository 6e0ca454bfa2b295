using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores;

/// <summary>A store's password from a file (a mounted secret): never from a flag value, which shows in <c>ps</c>.</summary>
internal static class PasswordFile
{
    /// <summary>
    /// The file's text without its trailing newline (from <c>echo</c>); an unreadable file stops
    /// the start with one line naming <paramref name="flag"/>.
    /// </summary>
    public static string Read(string path, string flag, string store)
    {
        try
        {
            return File.ReadAllText(path).TrimEnd('\r', '\n');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new StartupException($"cannot read the {store} password file ({flag}): {e.Message}");
        }
    }
}
