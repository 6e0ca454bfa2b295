using System.Text.Json;
using LeaderSidecar.Election;

namespace LeaderSidecar.Surfaces.LeaderFile;

/// <summary>
/// The file flag (<c>--leader-file</c>): the file exists only while this replica leads and holds the
/// JSON status with <c>validUntil</c>, rewritten atomically (temporary file, then rename) on every
/// renew. It is updated synchronously with every status change, so it is gone before the lease is
/// released. A crashed sidecar cannot remove it: apps that need strict safety check
/// <c>validUntil</c> or ask the HTTP/gRPC surfaces.
/// </summary>
internal sealed partial class LeaderFileFlag(string path, TimeProvider time, ILogger<LeaderFileFlag> logger)
{
    /// <summary>Checks the directory exists and removes a file left by an earlier run.</summary>
    /// <returns><see langword="null"/> when usable, else one line naming the problem.</returns>
    public string? Prepare()
    {
        var directory = Path.GetDirectoryName(path);
        if (directory is null || !Directory.Exists(directory))
        {
            return $"leader file directory {directory} does not exist (--leader-file)";
        }

        try
        {
            File.Delete(path);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"cannot remove leftover leader file {path}: {e.Message} (--leader-file)";
        }
    }

    /// <summary>Makes the file match <paramref name="status"/>. Never throws.</summary>
    public void Apply(LeadershipStatus status)
    {
        try
        {
            if (status.IsLeader)
            {
                var temporary = $"{path}.{Environment.ProcessId}.tmp";
                File.WriteAllBytes(temporary, JsonSerializer.SerializeToUtf8Bytes(StatusDocument.From(status, time), SurfaceJsonContext.Default.StatusDocument));
                File.Move(temporary, path, overwrite: true);
            }
            else
            {
                File.Delete(path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogFileFailed(logger, path, e.Message);
        }
    }

    [LoggerMessage(EventId = 400, EventName = "LeaderFileFailed", Level = LogLevel.Error,
        Message = "Could not update the leader file {Path}: {Reason}")]
    private static partial void LogFileFailed(ILogger logger, string path, string reason);
}
