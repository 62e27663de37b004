using System.Globalization;

namespace MinBft.Client.Cli;

/// <summary>
/// Progress of a known amount of work on standard error: a redrawn bar on a terminal, a line
/// per tenth otherwise (logs and CI output stay readable). Thread-safe.
/// </summary>
internal sealed class ProgressBar(CliConsole console, int total)
{
    private const int Width = 30;
    private static readonly TimeSpan RedrawInterval = TimeSpan.FromMilliseconds(100);

    private readonly Lock _lock = new();
    private long _lastDraw;
    private int _lastTenth = -1;

    public void Report(int done)
    {
        lock (_lock)
        {
            if (console.ErrorIsTerminal)
            {
                if (done < total && System.Diagnostics.Stopwatch.GetElapsedTime(_lastDraw) < RedrawInterval) return;
                _lastDraw = System.Diagnostics.Stopwatch.GetTimestamp();
                console.Error.Write("\r" + Render(done));
            }
            else
            {
                var tenth = total == 0 ? 10 : (int)(10L * done / total);
                if (tenth == _lastTenth) return;
                _lastTenth = tenth;
                console.Error.WriteLine(Render(done));
            }
        }
    }

    public async Task CompleteAsync()
    {
        Report(total);
        if (console.ErrorIsTerminal) await console.Error.WriteLineAsync().ConfigureAwait(false);
    }

    private string Render(int done)
    {
        var filled = total == 0 ? Width : (int)((long)Width * done / total);
        return string.Create(CultureInfo.InvariantCulture,
            $"[{new string('#', filled)}{new string('.', Width - filled)}] {done}/{total} requests");
    }
}
