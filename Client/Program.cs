using System.Runtime.InteropServices;
using MinBft.Client.Cli;

namespace MinBft.Client;

/// <summary>
/// The MinBFT client tool: <c>put</c>, <c>get</c>, <c>delete</c>, <c>status</c>, <c>keygen</c>,
/// <c>bench</c> and <c>demo</c> (see <see cref="ClientCli"/>; <c>--help</c> lists the options).
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        using var stop = new CancellationTokenSource();
        // Ctrl+C and SIGTERM cancel the running command, which then cleans up (a demo stops its cluster).
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        return await new ClientCli().InvokeAsync(args, stop.Token).ConfigureAwait(false);
    }
}
