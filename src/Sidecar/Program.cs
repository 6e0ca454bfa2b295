using LeaderSidecar.Configuration;
using LeaderSidecar.Hosting;
using LeaderSidecar.Surfaces.Exec;

namespace LeaderSidecar;

/// <summary>
/// Entry point. Exit codes: 0 after a clean shutdown (or --help/--version), 2 for bad input (one
/// line on stderr naming the problem), 1 for an unexpected failure (also one line, no stack trace).
/// In exec mode also: COMMAND's own exit code when it exits by itself (<c>--exec-on-exit=exit</c>),
/// and 3 when a shutdown had to kill COMMAND after <c>--exec-grace</c>.
/// </summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        // The re-exec that becomes COMMAND in exec mode: nothing else may run first.
        if (ExecChild.IsRequested(args))
        {
            return ExecChild.Run(args);
        }

        // `leader-sidecar status` and `resign`: a client of a running sidecar, not a daemon.
        if (Cli.ControlCommand.IsRequested(args))
        {
            return await Cli.ControlCommand.RunAsync(args, Environment.GetEnvironmentVariable);
        }

        // Before anything opens descriptors: the connection limits are derived from this limit.
        FileDescriptors.RaiseSoftLimit();
        switch (CommandLine.Parse(args, Environment.GetEnvironmentVariable, Environment.GetEnvironmentVariables().Keys.Cast<string>()))
        {
            case ParseResult.ShowHelp help:
                Console.Out.Write(help.Text);
                return 0;

            case ParseResult.ShowVersion version:
                Console.Out.WriteLine(version.Text);
                return 0;

            case ParseResult.Invalid invalid:
                Console.Error.WriteLine($"leader-sidecar: {invalid.Message}");
                return 2;

            case ParseResult.Run run:
                try
                {
                    return await Daemon.RunAsync(run.Options, Environment.GetEnvironmentVariable);
                }
                catch (StartupException e)
                {
                    Console.Error.WriteLine($"leader-sidecar: {e.Message}");
                    return 2;
                }
                catch (Exception e)
                {
                    Console.Error.WriteLine($"leader-sidecar: fatal: {e.GetType().Name}: {e.Message}");
                    return 1;
                }

            default:
                return 1;
        }
    }
}
