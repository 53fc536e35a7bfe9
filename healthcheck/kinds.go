package healthcheck

import (
	"slices"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
)

// Kind is one probe kind: everything cairn needs to know about it. Adding
// a kind is one file with its probe function (and its name constant) and
// one row in Kinds; the scheduler, `cairn probe`, the controller and the
// metrics read the row.
type Kind struct {
	Name  string
	Probe Func
	// Deep: a success proves the site issues (database, nonce service,
	// validation, CA and HSM were all used); the controller needs deep
	// successes before it calls a site healthy.
	Deep bool
	// Votes: the controller judges sites on it (a hard failure counts
	// toward down). Kinds that check what is around a site (the cluster
	// DNS, CRL publication, revocation, account replication) are shown and
	// alerted on, never voted on.
	Votes bool
	// Set: what `cairn probe SITE` runs it in: SetQuick (default),
	// SetDeep (with --deep) or SetExplicit (only named in --kinds).
	Set string
	// NeedsSpec: it needs the cluster (zone, DNS-01, CRL list); it cannot
	// run against a bare directory URL.
	NeedsSpec bool
	// Every is its interval in the controller and `probe --watch`; 0:
	// not scheduled.
	Every func(spec *cluster.Spec) time.Duration
	// MinDeadline: a run may take at least this long, whatever its
	// interval (else half the interval).
	MinDeadline time.Duration
}

// issuanceMinDeadline is the least time an issuance probe may take.
const issuanceMinDeadline = 7500 * time.Millisecond

// Sets of `cairn probe`.
const (
	SetQuick    = "quick"
	SetDeep     = "deep"
	SetExplicit = "explicit"
)

func every(d time.Duration) func(*cluster.Spec) time.Duration {
	return func(*cluster.Spec) time.Duration { return d }
}

// Kinds is the table of probe kinds.
var Kinds = []Kind{
	{Name: KindDNS, Probe: ProbeDNS, Set: SetQuick, NeedsSpec: true, Every: every(10 * time.Second)},
	{Name: KindTLS, Probe: ProbeTLS, Votes: true, Set: SetQuick, Every: every(10 * time.Second)},
	{Name: KindDirectory, Probe: ProbeDirectory, Votes: true, Set: SetQuick, Every: every(10 * time.Second)},
	{Name: KindNonce, Probe: ProbeNonce, Votes: true, Set: SetQuick,
		Every: func(s *cluster.Spec) time.Duration { return s.Failover.Probes.Nonce.Duration }},
	{Name: KindAccount, Probe: ProbeAccount, Deep: true, Votes: true, Set: SetDeep,
		Every: func(s *cluster.Spec) time.Duration { return s.Failover.Probes.Account.Duration }},
	// A whole issuance takes 0.1–0.5 s; a short interval must not make a
	// busy machine's slow one a failure: it keeps the deadline it had at
	// the former 15 s interval.
	{Name: KindIssuance, Probe: ProbeIssuance, Deep: true, Votes: true, Set: SetDeep, NeedsSpec: true,
		Every:       func(s *cluster.Spec) time.Duration { return s.Failover.Probes.Issuance.Duration },
		MinDeadline: issuanceMinDeadline},
	{Name: KindCRL, Probe: ProbeCRL, Set: SetDeep, NeedsSpec: true,
		Every: func(s *cluster.Spec) time.Duration { return s.Failover.Probes.CRL.Duration }},
	{Name: KindCRLFront, Probe: ProbeCRLFront, Set: SetQuick, NeedsSpec: true, Every: every(crlFrontEvery)},
	{Name: KindRevocation, Probe: ProbeRevocation, Set: SetExplicit, NeedsSpec: true, Every: every(0)},
	{Name: KindReplication, Probe: ProbeReplication, Set: SetExplicit, NeedsSpec: true,
		Every: func(s *cluster.Spec) time.Duration {
			if s.Accounts.Replication == cluster.ReplicationMariaDB && len(s.Sites) > 1 {
				return 10 * time.Second
			}
			return 0
		}},
}

// KindOf returns the row of a kind.
func KindOf(name string) (Kind, bool) {
	i := slices.IndexFunc(Kinds, func(k Kind) bool { return k.Name == name })
	if i < 0 {
		return Kind{}, false
	}
	return Kinds[i], true
}

// KindFunc returns the probe of a kind.
func KindFunc(name string) (Func, bool) {
	k, ok := KindOf(name)
	return k.Probe, ok
}

// KindNames lists every kind, for messages.
func KindNames() string {
	var names []string
	for _, k := range Kinds {
		names = append(names, k.Name)
	}
	return strings.Join(names, ", ")
}

// KindsIn returns the kinds `cairn probe` runs: the quick set, and with
// deep the deep set too.
func KindsIn(deep bool) []string {
	var out []string
	for _, k := range Kinds {
		if k.Set == SetQuick || (deep && k.Set == SetDeep) {
			out = append(out, k.Name)
		}
	}
	return out
}
