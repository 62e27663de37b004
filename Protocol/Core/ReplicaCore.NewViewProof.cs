using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// A NEW-VIEW travels by reference: its f+1 VIEW-CHANGEs are named by sender, digest and UI
/// (<see cref="NewView.ByReference"/>), so no message carries more than one VIEW-CHANGE's log.
/// A receiver resolves each reference against the VIEW-CHANGEs it holds (from their senders'
/// streams, its own, or relayed copies). It asks for a missing one (<see cref="ViewChangeFetch"/>):
/// first the NEW-VIEW's primary, which must hold what it referred to, then every replica. The
/// NEW-VIEW waits meanwhile in its primary's stream, as any message that cannot be processed yet;
/// if the copy never comes (a Byzantine primary referring to what it never had), the view-change
/// timer moves on, as for a NEW-VIEW that never arrived.
/// A reference is bound to one message by the USIG: a valid UI names one (counter, digest), so
/// the held VIEW-CHANGE with that sender, epoch and counter is the one the NEW-VIEW certified.
/// </summary>
public sealed partial class ReplicaCore
{
    // Relayed copies this replica asked for, by sender: at most one each (bounded by n).
    private readonly Dictionary<int, ViewChange> _relayedViewChanges = [];
    // References of the NEW-VIEWs waiting for a copy, by sender; and those found invalid.
    private readonly Dictionary<int, (CertifiedStub Stub, long View)> _wantedViewChanges = [];
    private readonly Dictionary<int, CertifiedStub> _invalidViewChanges = [];
    // References whose UI verified, by identity: a NEW-VIEW waiting in its stream is resolved
    // again at every step, and the same objects need not be verified again.
    private readonly HashSet<CertifiedStub> _verifiedReferences = new(ReferenceEqualityComparer.Instance);
    private TimeSpan? _viewChangeFetchAt;
    private int _viewChangeFetches;
    private readonly Dictionary<int, TimeSpan> _viewChangeFetchServedAt = [];
    // The VIEW-CHANGEs of the NEW-VIEW this replica entered its view with, kept whole so it can
    // serve them to a replica that gets that NEW-VIEW later (by retransmission or relay).
    private ViewChange[] _enteredProof = [];

    /// <summary>Relayed VIEW-CHANGE copies held (at most one per replica).</summary>
    public int HeldRelayedViewChanges => _relayedViewChanges.Count;

    /// <summary>VIEW-CHANGE fetches this replica sent, and relayed copies it accepted.</summary>
    public long ViewChangeFetchesSent { get; private set; }

    public long RelayedViewChangesAccepted { get; private set; }

    private enum ProofResolution { Resolved, Missing, Invalid }

    /// <summary>
    /// The NEW-VIEW with every VIEW-CHANGE whole, or why not: a reference whose UI does not verify
    /// or that names one found invalid makes the NEW-VIEW invalid; one not held yet is asked for.
    /// <c>Held</c> marks the VIEW-CHANGEs resolved from what this replica holds: each was checked
    /// when it arrived (or is its own), and its reference's UI was verified here.
    /// </summary>
    private (ProofResolution Resolution, NewView? Whole, bool[] Held, RejectReason Reason, string Detail) ResolveProof(NewView newView)
    {
        var held = new bool[newView.ViewChanges.Length];
        if (newView.IsWhole) return (ProofResolution.Resolved, newView, held, default, "");
        if (newView.ViewChanges.Length > N) return (ProofResolution.Invalid, null, held, RejectReason.Inconsistent, "NEW-VIEW refers to more VIEW-CHANGEs than there are replicas");
        var whole = new ViewChange[newView.ViewChanges.Length];
        var missing = new List<CertifiedStub>();
        for (var i = 0; i < whole.Length; i++)
        {
            if (newView.ViewChanges[i] is ViewChange vc)
            {
                whole[i] = vc;
                continue;
            }
            var stub = (CertifiedStub)newView.ViewChanges[i];
            if (!_verifiedReferences.Contains(stub))
            {
                if (!IsReplica(stub.ReplicaId) || !_crypto.Ui.Verify(stub.ReplicaId, stub.StubUi, stub.CertifiedDigest))
                    return (ProofResolution.Invalid, null, held, RejectReason.InvalidUi, $"NEW-VIEW refers to a VIEW-CHANGE of {stub.ReplicaId} whose UI does not verify");
                if (_verifiedReferences.Count >= MessageLimits.MaxViewChangesInNewView * N) _verifiedReferences.Clear(); // bounded
                _verifiedReferences.Add(stub);
            }
            if (_invalidViewChanges.TryGetValue(stub.ReplicaId, out var invalid) && SameUi(invalid.StubUi, stub.StubUi))
                return (ProofResolution.Invalid, null, held, RejectReason.Inconsistent, $"NEW-VIEW refers to an invalid VIEW-CHANGE of {stub.ReplicaId}");
            if (HeldViewChange(stub.ReplicaId, stub.StubUi) is { } vc2)
            {
                whole[i] = vc2;
                held[i] = true;
            }
            else missing.Add(stub);
        }
        if (missing.Count == 0) return (ProofResolution.Resolved, newView with { ViewChanges = whole }, held, default, "");
        foreach (var stub in missing) _wantedViewChanges[stub.ReplicaId] = (stub, newView.View);
        FetchViewChanges(newView.PrimaryId);
        return (ProofResolution.Missing, null, held, default, "");
    }

    private static bool SameUi(UniqueIdentifier a, UniqueIdentifier b) => a.Epoch == b.Epoch && a.Counter == b.Counter;

    /// <summary>The VIEW-CHANGE of <paramref name="sender"/> certified with <paramref name="ui"/>, if
    /// this replica holds it whole: from its sender's stream, its own log, a relayed copy, or the
    /// NEW-VIEW this replica entered its view with.</summary>
    private ViewChange? HeldViewChange(int sender, UniqueIdentifier ui)
    {
        foreach (var held in _viewChanges.Values)
            if (held.TryGetValue(sender, out var vc) && SameUi(vc.Ui, ui)) return vc;
        if (_relayedViewChanges.TryGetValue(sender, out var relayed) && SameUi(relayed.Ui, ui)) return relayed;
        foreach (var vc in _enteredProof)
            if (vc.ReplicaId == sender && SameUi(vc.Ui, ui)) return vc;
        foreach (var message in _own.CertifiedMessages())
        {
            if (message is ViewChange own && sender == Id && SameUi(own.Ui, ui)) return own;
            if (message is NewView { IsWhole: true } sent)
                foreach (var entry in sent.ViewChanges)
                    if (entry is ViewChange vc && vc.ReplicaId == sender && SameUi(vc.Ui, ui)) return vc;
        }
        return null;
    }

    /// <summary>Ask for the wanted VIEW-CHANGEs: the NEW-VIEW's primary first (it referred to them,
    /// so it holds them), then every replica (the primary may have crashed). Asked again after one
    /// retransmit interval, then 2, 4 and 8: a copy may be tens of MiB, and every replica that
    /// holds it answers, so asking faster than copies can arrive would only multiply them.</summary>
    private void FetchViewChanges(int primary)
    {
        if (_wantedViewChanges.Count == 0) return;
        var backoff = _tuning.RetransmitInterval * (1 << Math.Min(Math.Max(_viewChangeFetches - 1, 0), 3));
        if (_viewChangeFetchAt is { } at && _now - at < backoff) return;
        _viewChangeFetchAt = _now;
        var unsigned = new ViewChangeFetch(Id, [.. _wantedViewChanges.Values.Select(w => w.Stub).OrderBy(s => s.ReplicaId)], []);
        var signed = unsigned with { Signature = _crypto.Signer.Sign(MessageEncoding.ViewChangeFetch(unsigned)) };
        Emit(new Send(_viewChangeFetches++ == 0 && primary != Id ? primary : null, signed));
        ViewChangeFetchesSent++;
    }

    /// <summary>Serve a peer the VIEW-CHANGEs it names, those this replica holds whole.</summary>
    private void HandleViewChangeFetch(ViewChangeFetch fetch)
    {
        var from = fetch.ReplicaId;
        if (!AuthenticFromPeer(fetch, from, () => MessageEncoding.ViewChangeFetch(fetch), fetch.Signature, "VIEW-CHANGE fetch")) return;
        // Signed, so only replicas ask; each is answered at most twice an interval, so a faulty
        // replica cannot make us an amplifier of large messages.
        if (_viewChangeFetchServedAt.TryGetValue(from, out var served) && _now - served < _tuning.RetransmitInterval / 2) return;
        _viewChangeFetchServedAt[from] = _now;
        foreach (var stub in fetch.Wanted.DistinctBy(s => s.ReplicaId))
            if (IsReplica(stub.ReplicaId) && HeldViewChange(stub.ReplicaId, stub.StubUi) is { } vc)
                Emit(new Send(from, new ViewChangeRelay(Id, vc)));
    }

    /// <summary>A copy of a VIEW-CHANGE this replica asked for: kept (at most one per sender) when
    /// its UI verifies and it is the one referred to; checked as any VIEW-CHANGE.</summary>
    private void HandleViewChangeRelay(ViewChangeRelay relay)
    {
        if (MessageLimits.Check(relay) is { } malformed)
        {
            Reject(SafeSender(relay), RejectReason.Malformed, malformed);
            return;
        }
        var vc = relay.ViewChange;
        var sender = vc.ReplicaId;
        if (!IsReplica(relay.RelayerId) || relay.RelayerId == Id || !IsReplica(sender))
        {
            Reject(SafeSender(relay), RejectReason.UnknownSender, "relayed VIEW-CHANGE");
            return;
        }
        // Only what a waiting NEW-VIEW refers to: unasked copies would be memory for free.
        if (!_wantedViewChanges.TryGetValue(sender, out var want) || !SameUi(want.Stub.StubUi, vc.Ui))
        {
            Reject(relay.RelayerId, RejectReason.Duplicate, $"relayed VIEW-CHANGE of {sender} counter {vc.Ui.Counter} not asked for");
            return;
        }
        var digest = MessageEncoding.CertifiedDigest(vc);
        if (!digest.AsSpan().SequenceEqual(want.Stub.CertifiedDigest) || !_crypto.Ui.Verify(sender, vc.Ui, digest))
        {
            Reject(relay.RelayerId, RejectReason.InvalidUi, $"relayed VIEW-CHANGE of {sender} counter {vc.Ui.Counter}");
            return;
        }
        _wantedViewChanges.Remove(sender);
        if (ValidateViewChange(vc, digest) is { } invalid)
        {
            // Certified by its sender, so it is the one the NEW-VIEW refers to: that NEW-VIEW is invalid.
            _invalidViewChanges[sender] = want.Stub;
            Reject(sender, invalid.Reason, "relayed " + invalid.Detail);
            return;
        }
        _relayedViewChanges[sender] = vc;
        RelayedViewChangesAccepted++;
        ProtocolInvariantException.Check(_relayedViewChanges.Count <= N, "at most one relayed VIEW-CHANGE held per replica");
    }

    /// <summary>Tick: ask again for copies still wanted.</summary>
    private void ViewChangeFetchTimer()
    {
        // A NEW-VIEW this replica no longer needs (it moved past that view) wants nothing more.
        foreach (var (sender, want) in _wantedViewChanges.ToList())
            if (want.View < View || (want.View == View && !_viewChanging)) _wantedViewChanges.Remove(sender);
        if (_wantedViewChanges.Count > 0) FetchViewChanges(Primary);
    }

    /// <summary>The view is entered: copies, wants and verdicts of its view change are done with.</summary>
    private void ForgetViewChangeCopies(ViewChange[] enteredProof)
    {
        _enteredProof = enteredProof;
        _relayedViewChanges.Clear();
        _wantedViewChanges.Clear();
        _invalidViewChanges.Clear();
        _verifiedReferences.Clear();
        _viewChangeFetchAt = null;
        _viewChangeFetches = 0;
    }
}
