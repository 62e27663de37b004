using Orleans.Storage;

namespace MinBft.Hosting.Journal;

/// <summary>
/// What every journal does the same way, whatever stores it: one call at a time, validation
/// against the <see cref="JournalIndex"/> before anything is stored, fencing that sticks, and
/// resolving a write whose outcome is unknown before the next one.
/// </summary>
/// <remarks>
/// A write that threw (other than fencing) may still have become durable. It stays pending;
/// before the next write the backend looks whether it landed (<see cref="FindLandedAsync"/>).
/// If it did, it is applied, and a retried append is cut down to what the landed one did not
/// write (<see cref="JournalIndex.Rebase"/>), so nothing is stored twice.
/// </remarks>
public abstract class ReplicaJournal : IReplicaJournal
{
    // Attempts that failed with an unknown outcome, all aimed at the same place: at most one landed.
    private readonly List<JournalWrite> _pending = [];

    // Writes found landed since a call last returned: a call that failed after one of its
    // attempts landed may fail again after another landed, and its retry still repeats the
    // first failed call's intents. Rebased past all of them, in order, it writes only the rest.
    private readonly List<JournalWrite> _landed = [];
    private JournalIndex? _index;
    private long _attempts;
    private int _busy;
    private bool _fenced;
    private string? _fencedBy;

    /// <summary>What this instance knows is stored (null before <see cref="OpenAsync"/>).</summary>
    internal JournalIndex? Index => _index;

    /// <inheritdoc/>
    public async Task<JournalContents> OpenAsync(CancellationToken cancellationToken)
    {
        Enter();
        try
        {
            _index = null;
            _pending.Clear();
            _landed.Clear();
            _fenced = false;
            var contents = await LoadAndClaimAsync(cancellationToken).ConfigureAwait(false);
            _index = JournalIndex.Of(contents);
            return contents;
        }
        finally
        {
            Exit();
        }
    }

    /// <inheritdoc/>
    public Task AppendAsync(JournalAppend append, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(append);
        return WriteAsync(
            (index, landed, attempt) => index.PlanAppend(landed.Aggregate(append, JournalIndex.Rebase), attempt),
            cancellationToken);
    }

    /// <inheritdoc/>
    public Task RestartAtAsync(ulong nextCounter, CancellationToken cancellationToken) =>
        WriteAsync((index, _, attempt) => index.PlanRestartAt(nextCounter, attempt), cancellationToken);

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await DisposeCoreAsync().ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }

    /// <summary>Reads what is stored and takes ownership, so that earlier owners' writes fail from now on.</summary>
    private protected abstract Task<JournalContents> LoadAndClaimAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Stores <paramref name="write"/> durably and atomically if this instance still owns the
    /// journal (else <see cref="InconsistentStateException"/>, nothing stored). Any other
    /// exception: the outcome is unknown.
    /// </summary>
    private protected abstract Task CommitAsync(JournalWrite write, CancellationToken cancellationToken);

    /// <summary>
    /// Which of the <paramref name="pending"/> writes became durable, or null if none did (yet).
    /// Throws <see cref="InconsistentStateException"/> if another owner wrote where they aimed.
    /// </summary>
    private protected abstract Task<JournalWrite?> FindLandedAsync(IReadOnlyList<JournalWrite> pending, CancellationToken cancellationToken);

    /// <summary>True if a pending write found absent can no longer land (nothing of it is in flight).</summary>
    private protected abstract bool AbsentIsFinal { get; }

    /// <summary>Called after <paramref name="write"/> became durable (committed, or found landed) and the index applied it.</summary>
    private protected virtual Task AfterCommitAsync(JournalWrite write, CancellationToken cancellationToken) => Task.CompletedTask;

    private protected virtual ValueTask DisposeCoreAsync() => ValueTask.CompletedTask;

    /// <summary>Marks the journal fenced from outside a write (e.g. a trim found another owner).</summary>
    private protected void Fence(string reason)
    {
        _fenced = true;
        _fencedBy = reason;
    }

    private async Task WriteAsync(Func<JournalIndex, IReadOnlyList<JournalWrite>, long, JournalWrite> plan, CancellationToken cancellationToken)
    {
        Enter();
        try
        {
            var index = _index ?? throw new InvalidOperationException("The journal is not open: call OpenAsync first.");
            if (_fenced)
                throw new InconsistentStateException($"Another activation opened this journal since this one did ({_fencedBy}); open it again to write.");
            for (var round = 0; ; round++)
            {
                if (_pending.Count > 0)
                {
                    var found = await FindLandedAsync(_pending, cancellationToken).ConfigureAwait(false);
                    if (found is not null)
                    {
                        _pending.Clear();
                        index.Apply(found);
                        _landed.Add(found);
                        await AfterCommitAsync(found, cancellationToken).ConfigureAwait(false);
                    }
                    else if (AbsentIsFinal)
                    {
                        _pending.Clear();
                    }
                }

                // Throws ArgumentException for invalid input: nothing stored.
                var write = plan(index, _landed, ++_attempts);
                try
                {
                    await CommitAsync(write, cancellationToken).ConfigureAwait(false);
                }
                catch (InconsistentStateException) when (_pending.Count > 0 && round == 0)
                {
                    // A pending attempt may have landed late, where this one aimed: look again.
                    continue;
                }
                catch (InconsistentStateException e)
                {
                    Fence(e.Message);
                    throw;
                }
                catch
                {
                    _pending.Add(write);
                    throw;
                }
                _pending.Clear();
                _landed.Clear();
                index.Apply(write);
                await AfterCommitAsync(write, cancellationToken).ConfigureAwait(false);
                return;
            }
        }
        catch (InconsistentStateException e) when (!_fenced)
        {
            Fence(e.Message);
            throw;
        }
        finally
        {
            Exit();
        }
    }

    private void Enter()
    {
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("Overlapping journal calls: the caller must await each call before the next.");
    }

    private void Exit() => Volatile.Write(ref _busy, 0);
}
