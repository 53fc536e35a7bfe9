package revocation

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairn-pki/cairn/cluster"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Entry is one revocation request in the journal, from the request until
// its serial is seen in a CRL the issuing site published.
type Entry struct {
	Serial      string    `json:"serial"`
	Site        string    `json:"site"`
	Reason      string    `json:"reason"`
	Requester   string    `json:"requester,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
	// AppliedAt: the issuing site revoked it (Boulder records its own
	// clock then as the revocation date; RequestedAt stays for audit).
	AppliedAt time.Time `json:"appliedAt,omitzero"`
	// InCRLAt: first seen in a CRL the site published.
	InCRLAt   time.Time `json:"inCRLAt,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	// Deferred: the site could not be reached when it was first tried; it
	// may not become the active site again until the serial is in its
	// CRL.
	Deferred bool `json:"deferred,omitempty"`
	// SPKIHash (keyCompromise with the certificate known): SHA-256 of its
	// public key, blocked at every site; KeyBlocked says when, per site.
	SPKIHash   string               `json:"spkiSHA256,omitempty"`
	KeyBlocked map[string]time.Time `json:"keyBlocked,omitempty"`
}

// keyBlocksDone reports whether every site has blocked the entry's key
// (or there is none to block).
func (e Entry) keyBlocksDone(sites []string) bool {
	if e.SPKIHash == "" {
		return true
	}
	for _, s := range sites {
		if e.KeyBlocked[s].IsZero() {
			return false
		}
	}
	return true
}

// Pending reports whether the entry is not yet in a published CRL.
func (e Entry) Pending() bool { return e.InCRLAt.IsZero() }

// State is "pending", "revoked" (at the site, not yet in a CRL) or "in-crl".
func (e Entry) State() string {
	switch {
	case !e.InCRLAt.IsZero():
		return "in-crl"
	case !e.AppliedAt.IsZero():
		return "revoked"
	}
	return "pending"
}

// Journal keeps revocation requests outside every site.
type Journal interface {
	Put(ctx context.Context, e Entry) error
	List(ctx context.Context) ([]Entry, error)
}

// EtcdJournal keeps one key per serial under Prefix+"revocations/" in the
// controllers' etcd.
type EtcdJournal struct {
	Client *clientv3.Client
	Prefix string
}

func (j EtcdJournal) key(serial string) string { return j.Prefix + "revocations/" + serial }

func (j EtcdJournal) Put(ctx context.Context, e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = j.Client.Put(ctx, j.key(e.Serial), string(b))
	return err
}

func (j EtcdJournal) List(ctx context.Context) ([]Entry, error) {
	r, err := j.Client.Get(ctx, j.Prefix+"revocations/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, kv := range r.Kvs {
		var e Entry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("revocation journal %s: %w", kv.Key, err)
		}
		out = append(out, e)
	}
	sortEntries(out)
	return out, nil
}

func sortEntries(es []Entry) {
	sort.Slice(es, func(i, k int) bool { return es[i].RequestedAt.Before(es[k].RequestedAt) })
}

// MemJournal is a Journal in memory (tests).
type MemJournal struct {
	mu sync.Mutex
	m  map[string]Entry
}

func (j *MemJournal) Put(_ context.Context, e Entry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.m == nil {
		j.m = map[string]Entry{}
	}
	j.m[e.Serial] = e
	return nil
}

func (j *MemJournal) List(context.Context) ([]Entry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Entry
	for _, e := range j.m {
		out = append(out, e)
	}
	sortEntries(out)
	return out, nil
}

// Replayer carries every journal entry to the issuing site's CRL: it
// revokes at the site when the site answers (a site that is down keeps
// its entries pending), then watches the site's published CRLs until the
// serial is there. A site with pending entries must not become the
// active site (the controller asks Blocked).
type Replayer struct {
	Journal Journal
	// Revoke revokes at the issuing site (Admin.Revoke).
	Revoke func(ctx context.Context, site, serial, reason string) error
	// InCRL reports whether serial is in a CRL the site published.
	InCRL func(ctx context.Context, site, serial string) (bool, error)
	// Publish, if set, has the site publish its CRLs now (after a deferred
	// revocation was applied: a returning site is gated until then).
	Publish func(ctx context.Context, site string) error
	// Sites and BlockKey: a keyCompromise key is blocked at every site,
	// the live ones at once, the others when they answer (and they are
	// gated until then).
	Sites    []string
	BlockKey func(ctx context.Context, site, spkiHash, comment string) error
	// Route, if set, names the site that issued a serial (Route with the
	// spec): an entry naming another site is refused.
	Route func(serial string) (string, error)
	Now   func() time.Time

	mu      sync.Mutex
	blocked map[string]int
	pending map[string]int
	refused int
}

// check re-validates an entry read from the journal before anything acts
// on it: the journal is in etcd, and whoever can write there must not
// steer the controller's credentials (revoke another site's serial, pass
// a reason or a key hash the agent would not get from `cairn revoke`).
func (r *Replayer) check(e Entry) error {
	if !slices.Contains(Reasons, e.Reason) {
		return fmt.Errorf("reason %q is not one of %s", cluster.Excerpt(e.Reason), strings.Join(Reasons, ", "))
	}
	if b, err := hex.DecodeString(e.Serial); err != nil || len(b) == 0 || len(b) > 20 {
		return fmt.Errorf("serial %q is not a certificate serial in hex", cluster.Excerpt(e.Serial))
	}
	if e.SPKIHash != "" {
		if b, err := hex.DecodeString(e.SPKIHash); err != nil || len(b) != 32 {
			return fmt.Errorf("key hash %q is not a SHA-256 in hex", cluster.Excerpt(e.SPKIHash))
		}
	}
	if r.Route != nil {
		site, err := r.Route(e.Serial)
		if err != nil {
			return err
		}
		if site != e.Site {
			return fmt.Errorf("serial %s was issued by site %s, the entry names site %q", e.Serial, site, cluster.Excerpt(e.Site))
		}
	} else if len(r.Sites) > 0 && !slices.Contains(r.Sites, e.Site) {
		return fmt.Errorf("site %q is not a site of this cluster", cluster.Excerpt(e.Site))
	}
	return nil
}

// refusedPrefix marks an entry the replayer will not act on.
const refusedPrefix = "refused by the controller: "

func (r *Replayer) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Submit journals a new request (a serial already journaled keeps its
// entry) and returns the entry.
func (r *Replayer) Submit(ctx context.Context, e Entry) (Entry, error) {
	all, err := r.Journal.List(ctx)
	if err != nil {
		return Entry{}, err
	}
	for _, old := range all {
		if old.Serial == e.Serial {
			return old, nil
		}
	}
	e.RequestedAt = r.now()
	if err := r.Journal.Put(ctx, e); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// RestoredPrefix starts the LastError of an entry Reopen made pending.
const RestoredPrefix = "the site was restored from a backup: "

// Reopen is told that site was restored from a backup: every entry of a
// serial of site is pending again (the site revokes it again, or finds
// it revoked already, and the serial must reach its CRLs again before the
// site may become active), and every key block is due again there. It
// returns how many entries it reopened.
func (r *Replayer) Reopen(ctx context.Context, site string) (int, error) {
	all, err := r.Journal.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range all {
		if r.check(e) != nil {
			continue
		}
		changed := false
		if e.Site == site {
			e.AppliedAt, e.InCRLAt, e.Deferred = time.Time{}, time.Time{}, true
			e.LastError = RestoredPrefix + "revoking again"
			changed = true
		}
		if _, ok := e.KeyBlocked[site]; ok {
			delete(e.KeyBlocked, site)
			changed = true
		}
		if changed {
			if err := r.Journal.Put(ctx, e); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// Step advances every pending entry once.
func (r *Replayer) Step(ctx context.Context) error {
	all, err := r.Journal.List(ctx)
	if err != nil {
		return err
	}
	blocked, pending := map[string]int{}, map[string]int{}
	refused := 0
	var errs []error
	for _, e := range all {
		if err := r.check(e); err != nil {
			// Counted, marked once for `cairn revoke status`, and neither
			// applied nor gating a site.
			refused++
			if msg := refusedPrefix + err.Error(); e.LastError != msg {
				e.LastError = msg
				if err := r.Journal.Put(ctx, e); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if !e.Pending() && e.keyBlocksDone(r.Sites) {
			continue
		}

		before := e
		before.KeyBlocked = maps.Clone(e.KeyBlocked)
		if e.Pending() {
			r.apply(ctx, &e)
			if e.Pending() && e.Deferred {
				blocked[e.Site]++
			}
		}
		for _, site := range r.blockKey(ctx, &e) {
			blocked[site]++
		}
		if !reflect.DeepEqual(e, before) {
			if err := r.Journal.Put(ctx, e); err != nil {
				errs = append(errs, err)
			}
		}
		if e.Pending() {
			pending[e.Site]++
		}
	}
	r.mu.Lock()
	r.blocked, r.pending, r.refused = blocked, pending, refused
	r.mu.Unlock()
	return errors.Join(errs...)
}

// Refused is the number of journal entries the last Step refused to act
// on (check): someone who is not the controller wrote the journal.
func (r *Replayer) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// apply revokes at the issuing site (deferred when it does not answer)
// and watches its CRLs.
func (r *Replayer) apply(ctx context.Context, e *Entry) {
	if e.AppliedAt.IsZero() {
		switch err := r.Revoke(ctx, e.Site, e.Serial, e.Reason); {
		case err == nil || errors.Is(err, ErrAlreadyRevoked):
			e.AppliedAt, e.LastError = r.now(), ""
			if e.Deferred && r.Publish != nil {
				if err := r.Publish(ctx, e.Site); err != nil {
					e.LastError = "publishing CRLs: " + err.Error()
				}
			}
		case errors.Is(err, ErrNotFound) && r.InCRL != nil:
			// A site rebuilt from a backup older than the certificate:
			// the rebuild put the serial back into its CRLs from the
			// archived ones (cairn site rebuild), or nothing can.
			if in, cerr := r.InCRL(ctx, e.Site, e.Serial); cerr == nil && in {
				e.AppliedAt, e.LastError = r.now(), ""
			} else {
				e.LastError, e.Deferred = err.Error()+"; it is not in the site's CRLs either: only cairn pki revoke-site covers it", true
			}
		default:
			// Down: pending.
			e.LastError, e.Deferred = err.Error(), true
		}
	}
	if !e.AppliedAt.IsZero() {
		switch in, err := r.InCRL(ctx, e.Site, e.Serial); {
		case err != nil:
			e.LastError = err.Error()
		case in:
			e.InCRLAt, e.LastError = r.now(), ""
		}
	}
}

// blockKey blocks a keyCompromise entry's key at every site that has not
// yet; it returns the sites that did not answer.
func (r *Replayer) blockKey(ctx context.Context, e *Entry) []string {
	if e.SPKIHash == "" || r.BlockKey == nil {
		return nil
	}
	var missing []string
	for _, site := range r.Sites {
		if !e.KeyBlocked[site].IsZero() {
			continue
		}
		if err := r.BlockKey(ctx, site, e.SPKIHash, "cairn revoke "+e.Serial+" keyCompromise"); err != nil {
			e.LastError = err.Error()
			missing = append(missing, site)
			continue
		}
		if e.KeyBlocked == nil {
			e.KeyBlocked = map[string]time.Time{}
		}
		e.KeyBlocked[site] = r.now()
	}
	return missing
}

// Pending returns, per site, the journal entries not yet in its published
// CRLs (as of the last Step).
func (r *Replayer) Pending() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.pending)
}

// Blocked returns, per site, why it must not become active: revocations
// requested while it was unreachable that are not yet in its published
// CRLs, and compromised keys it has not blocked yet (as of the last Step).
func (r *Replayer) Blocked() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for site, n := range r.blocked {
		if n > 0 {
			out[site] = fmt.Sprintf("%d revocation(s) or compromised key(s) from while it was down not yet applied", n)
		}
	}
	return out
}
