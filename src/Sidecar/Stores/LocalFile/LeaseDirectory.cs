namespace LeaderSidecar.Stores.LocalFile;

/// <summary>
/// Where the file backend keeps its leases, and whether that place can be trusted. Whoever can
/// write the directory can write the lease, so it decides who leads: a directory another user
/// prepared (the old default <c>/tmp/leader-sidecar</c> could be created by anyone first) would
/// hand them the election, and links planted in it would turn our writes against our own files.
/// </summary>
/// <remarks>
/// The rules (checked on Linux; elsewhere only the directory's existence is):
/// <list type="bullet">
/// <item>The default directory is private: <c>/tmp/leader-sidecar-UID</c>, created owner-only.
/// Not <c>$XDG_RUNTIME_DIR</c>: a candidate started with it set and one started without it (a
/// login shell and a cron job of the same user) would keep two leases, and both would lead. It must be a real directory (not a symbolic
/// link), owned by this process's uid, and writable by nobody else.</item>
/// <item>A directory given with <c>--lease-dir</c> is the user's choice: it may be reached through
/// symbolic links, belong to another user and be group-writable (a team shares one directory
/// between its users through a group), but never writable by every user, not even with the sticky
/// bit: anybody could create the lease file first, own it, and rewrite it at will.</item>
/// </list>
/// Parent directories are not examined. Files inside are opened without following links
/// (<see cref="UnixFiles.Open"/>) whichever rule applied.
/// </remarks>
internal static class LeaseDirectory
{
    /// <summary>The default directory for this user.</summary>
    public static string Default()
    {
        return UnixFiles.Supported
            ? $"/tmp/leader-sidecar-{UnixFiles.EffectiveUid}"
            : Path.Combine(Path.GetTempPath(), $"leader-sidecar-{Environment.UserName}");
    }

    /// <summary>
    /// Creates <paramref name="directory"/> owner-only if it is missing, then checks it against the
    /// rules above.
    /// </summary>
    /// <param name="directory">A full path.</param>
    /// <param name="chosenByUser">True for <c>--lease-dir</c>, false for the default.</param>
    /// <returns><see langword="null"/> when usable, else why not (one line, without the directory's name).</returns>
    /// <exception cref="IOException">The directory cannot be created or examined.</exception>
    /// <exception cref="UnauthorizedAccessException">Permission denied while creating or examining it.</exception>
    public static string? Prepare(string directory, bool chosenByUser)
    {
        if (!UnixFiles.Supported)
        {
            Directory.CreateDirectory(directory);
            return null;
        }

        if (!Exists(directory))
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        var found = UnixFiles.Examine(directory, follow: chosenByUser);
        var mode = Convert.ToString(found.Mode & 0xFFF, 8).PadLeft(4, '0');
        if (found.IsSymbolicLink)
        {
            return "it is a symbolic link, which the default directory must not be (it may have been planted by another user); remove it, or name a directory with --lease-dir";
        }

        if (!found.IsDirectory)
        {
            return "it is not a directory";
        }

        var me = UnixFiles.EffectiveUid;
        if (!chosenByUser && found.Uid != me)
        {
            return $"it belongs to uid {found.Uid}, not to this process (uid {me}), so another user may control the lease; remove it, or name a directory with --lease-dir";
        }

        if (found.OtherWritable)
        {
            return $"every user may write it (mode {mode}), so anybody could create or rewrite the lease; use a directory only you or your group can write";
        }

        if (!chosenByUser && found.GroupWritable)
        {
            return $"its group may write it (mode {mode}) but the default directory must be private; run chmod g-w on it, or share a directory on purpose with --lease-dir";
        }

        return null;
    }

    /// <summary>Whether anything, a dangling link included, has this name: never create through a link.</summary>
    private static bool Exists(string path)
    {
        try
        {
            UnixFiles.Examine(path, follow: false);
            return true;
        }
        catch (FileNotFoundException)
        {
            return false;
        }
    }
}
