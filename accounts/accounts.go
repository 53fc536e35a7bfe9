// Package accounts watches ACME account replication between sites: every
// site's MariaDB pulls boulder_sa.registrations from every peer (rendered
// by package site; docs/accounts.md). Status reads each site's replication
// connections and account rows through a Reader and says what is wrong:
// a stopped connection, a missing filter, lag, skipped rows, and accounts
// that differ between sites.
package accounts

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// Connection is one replication connection as MariaDB reports it (SHOW ALL
// SLAVES STATUS), named after the peer it pulls from.
type Connection struct {
	Name         string
	IORunning    string // Yes, No, Connecting
	SQLRunning   string
	LastIOError  string
	LastSQLError string
	DoTable      string // Replicate_Do_Table
	DoDomainIDs  string // Replicate_Do_Domain_Ids
	UsingGTID    string // Slave_Pos
	// SecondsBehind is Seconds_Behind_Master; nil when MariaDB says NULL.
	SecondsBehind *int64
	GTIDSlavePos  string
}

// Account is one row of the registrations table, as compared across sites.
type Account struct {
	ID     int64
	KeySHA string // jwk_sha256
	Status string
}

// ForeignWrite is what a site refused from one peer: replicated account
// rows whose ID is not in that peer's range (site.ForeignWritesTable).
type ForeignWrite struct {
	Count  int64     `json:"count"`
	LastID int64     `json:"lastID"`
	LastOp string    `json:"lastOp"` // insert, update or delete
	LastAt time.Time `json:"lastAt"`
	// LastTable is the replicated table of the last refused row
	// (site.ReplicatedTables: the accounts or an EAB table).
	LastTable string `json:"lastTable,omitempty"`
}

// Raw is what one site's database says.
type Raw struct {
	Connections   []Connection
	BinlogPos     string // @@gtid_binlog_pos
	SkippedErrors int64  // global Slave_skipped_errors (conflicts and refused foreign rows)
	Accounts      []Account

	// The ownership guard (docs/accounts.md, "Only owned rows").
	RunTriggersForRBR string // @@slave_run_triggers_for_rbr: ENFORCE
	SkipErrors        string // @@slave_skip_errors: lists site.ForeignWriteErrno
	// ForeignWrites by the peer's GTID domain (its serial prefix); nil
	// with ForeignWritesErr when the count could not be read.
	ForeignWrites    map[int64]ForeignWrite
	ForeignWritesErr string
}

// GuardProblem is what keeps the site from refusing a peer's rows outside
// the peer's range, or "". A replica whose triggers do not run for
// replicated rows applies them all; one that does not skip the triggers'
// error stops its connection at the first foreign row.
func (raw Raw) GuardProblem() string {
	const fix = "restart its MariaDB with the rendered my.cnf"
	switch {
	case !strings.EqualFold(raw.RunTriggersForRBR, "ENFORCE"):
		return fmt.Sprintf("replicated account rows are not checked for their origin (slave_run_triggers_for_rbr %s, not ENFORCE): %s", orDash(raw.RunTriggersForRBR), fix)
	case !slices.Contains(strings.Split(raw.SkipErrors, ","), strconv.Itoa(site.ForeignWriteErrno)):
		return fmt.Sprintf("a refused foreign account row would stop replication (slave_skip_errors %s lacks %d): %s", orDash(raw.SkipErrors), site.ForeignWriteErrno, fix)
	case raw.ForeignWritesErr != "":
		return fmt.Sprintf("no ownership guard (%s: %s): restart the site's database so db-replication.sql is applied", site.ForeignWritesTable, firstLine(raw.ForeignWritesErr))
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// Connection finds the site's connection from peer.
func (raw Raw) Connection(peer string) (Connection, bool) {
	name := site.ConnectionName(peer)
	for _, c := range raw.Connections {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Connection{}, false
}

func (c Connection) running() bool { return c.IORunning == "Yes" && c.SQLRunning == "Yes" }

func (c Connection) errorText() string {
	return strings.TrimSpace(strings.Join(nonEmpty(c.LastIOError, c.LastSQLError), "; "))
}

// Problem is what is wrong with this connection from peer, whose GTID
// domain is domain, or "": its filters (without the table filter a
// connection copies every table: the peer's orders and certificates would
// land here; without the domain filter the peer could send rows under
// another site's domain, and they would be judged as that site's), its
// threads, its GTID mode. Lag is the caller's to judge.
func (c Connection) Problem(peer string, domain int64) string {
	switch {
	case !site.FilterOK(c.DoTable):
		return fmt.Sprintf("connection from %s replicates %q, not exactly %s: stop it now (STOP SLAVE '%s') and restart the database with the rendered my.cnf", peer, c.DoTable, site.ReplicationFilter(), site.ConnectionName(peer))
	case strings.TrimSpace(c.DoDomainIDs) != strconv.FormatInt(domain, 10):
		return fmt.Sprintf("connection from %s takes GTID domains %q, not only %s's %d: stop it now (STOP SLAVE '%s') and restart the database so db-replication.sql is applied", peer, c.DoDomainIDs, peer, domain, site.ConnectionName(peer))
	case !c.running():
		why := c.errorText()
		if why == "" {
			why = "IO " + c.IORunning + ", SQL " + c.SQLRunning
		}
		return fmt.Sprintf("replication from %s not running: %s", peer, firstLine(why))
	case !strings.EqualFold(c.UsingGTID, "Slave_Pos"):
		return fmt.Sprintf("connection from %s does not use GTIDs (Using_Gtid %s)", peer, c.UsingGTID)
	}
	return ""
}

// Peer is a site a replica pulls accounts from: its name and its GTID
// domain (its serial prefix, also the residue of its account IDs).
type Peer struct {
	Name   string
	Domain int64
}

// Reader reads one site's database (the monitor user over TLS in
// production; a fake in unit tests).
type Reader interface {
	Read(ctx context.Context, site string) (Raw, error)
}

// ConnectionStatus is one site's connection to one peer, judged.
type ConnectionStatus struct {
	Site string `json:"site"` // the replica
	Peer string `json:"peer"` // the source
	// Running: both threads run (IO "Yes" and SQL "Yes").
	Running    bool   `json:"running"`
	IO         string `json:"io"`
	SQL        string `json:"sql"`
	Error      string `json:"error,omitempty"`
	LagSeconds *int64 `json:"lagSeconds"`
	// LagTransactions: the peer's last transaction in its own GTID domain
	// minus the last one this site has from it; null when either is
	// unknown (peer unreachable).
	LagTransactions *int64 `json:"lagTransactions"`
	Filter          string `json:"filter"`
	FilterOK        bool   `json:"filterVerified"`
	GTID            bool   `json:"gtid"`
	Missing         bool   `json:"missing,omitempty"` // no such connection
	// ForeignWrites: account rows from Peer that Site refused, ever,
	// because their ID is not in Peer's range (a compromised or misused
	// peer, or a key rollover or deactivation made at Peer for another
	// site's account). Null when the site's count could not be read.
	ForeignWrites *ForeignWrite `json:"foreignWrites"`
}

// SiteStatus is one site.
type SiteStatus struct {
	Site      string `json:"site"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	BinlogPos string `json:"gtidBinlogPos,omitempty"`
	// SkippedRows: rows the site skipped since its MariaDB started
	// (duplicate key or missing row: the same key registered at two sites,
	// or a re-applied event). A count, not a problem by itself: what it
	// left different between sites shows in the diff; alert on increases.
	SkippedRows int64 `json:"skippedRows"`
	Accounts    int   `json:"accounts"`
	// Extra: connections that no peer in the spec explains.
	Extra []string `json:"unexpectedConnections,omitempty"`
	// Guard: what keeps the site from refusing rows outside a peer's
	// range ("" = it refuses them).
	Guard string `json:"guardProblem,omitempty"`
}

// Missing is an account some sites have and others lack.
type Missing struct {
	ID        int64    `json:"id"`
	Origin    string   `json:"origin"` // the site whose ID range it is in
	MissingAt []string `json:"missingAt"`
}

// Mismatch is an account whose key or status differs between sites.
type Mismatch struct {
	ID     int64             `json:"id"`
	Field  string            `json:"field"` // key or status
	BySite map[string]string `json:"bySite"`
}

// Conflict is one key registered under several IDs (at several sites
// while they could not see each other). Each site keeps the row it had.
type Conflict struct {
	KeySHA string           `json:"keySHA256"`
	IDs    map[string]int64 `json:"idBySite"`
}

// Status is the whole cluster's account replication.
type Status struct {
	Time        time.Time          `json:"time"`
	Replication string             `json:"replication"` // the spec's mode
	Sites       []SiteStatus       `json:"sites"`
	Connections []ConnectionStatus `json:"connections"`
	Missing     []Missing          `json:"missing"`
	Mismatches  []Mismatch         `json:"mismatches"`
	Conflicts   []Conflict         `json:"conflicts"`
	// Problems are one line each; none means healthy.
	Problems []string `json:"problems"`
	OK       bool     `json:"ok"`
}

// Check reads every site and judges replication.
func Check(ctx context.Context, spec *cluster.Spec, r Reader) *Status {
	st := &Status{Time: time.Now().UTC(), Replication: spec.Accounts.Replication,
		Missing: []Missing{}, Mismatches: []Mismatch{}, Conflicts: []Conflict{}, Problems: []string{}}
	raws := map[string]*Raw{}
	type result struct {
		raw Raw
		err error
	}
	results := make([]result, len(spec.Sites))
	done := make(chan int)
	for i, s := range spec.Sites {
		go func() {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			raw, err := r.Read(rctx, s.Name)
			results[i] = result{raw, err}
			done <- i
		}()
	}
	for range spec.Sites {
		<-done
	}
	for i, s := range spec.Sites {
		ss := SiteStatus{Site: s.Name}
		if err := results[i].err; err != nil {
			ss.Error = err.Error()
			st.Problems = append(st.Problems, fmt.Sprintf("site %s: database unreachable: %v", s.Name, err))
		} else {
			raw := results[i].raw
			raws[s.Name] = &raw
			ss.Reachable, ss.BinlogPos, ss.SkippedRows, ss.Accounts = true, raw.BinlogPos, raw.SkippedErrors, len(raw.Accounts)
		}
		st.Sites = append(st.Sites, ss)
	}
	if spec.Accounts.Replication == cluster.ReplicationMariaDB && len(spec.Sites) > 1 {
		st.guards(spec, raws)
		st.connections(spec, raws)
		st.diff(spec, raws)
	}
	st.OK = len(st.Problems) == 0
	return st
}

// guards notes the sites that would apply a peer's rows outside its range.
func (st *Status) guards(spec *cluster.Spec, raws map[string]*Raw) {
	for i, s := range spec.Sites {
		if raw := raws[s.Name]; raw != nil {
			if g := raw.GuardProblem(); g != "" {
				st.Sites[i].Guard = g
				st.Problems = append(st.Problems, fmt.Sprintf("site %s: %s", s.Name, g))
			}
		}
	}
}

func (st *Status) connections(spec *cluster.Spec, raws map[string]*Raw) {
	prefix := map[string]int64{}
	for _, s := range spec.Sites {
		prefix[s.Name] = int64(s.SerialPrefix.Value())
	}
	for i, s := range spec.Sites {
		raw := raws[s.Name]
		if raw == nil {
			continue
		}
		byName := map[string]Connection{}
		for _, c := range raw.Connections {
			byName[strings.ToLower(c.Name)] = c
		}
		// What is left in byName at the end no peer explains.
		for _, peer := range spec.Sites {
			if peer.Name == s.Name {
				continue
			}
			name := site.ConnectionName(peer.Name)
			c, ok := byName[name]
			delete(byName, name)
			cs := ConnectionStatus{Site: s.Name, Peer: peer.Name}
			if !ok {
				cs.Missing = true
				st.Problems = append(st.Problems, fmt.Sprintf("site %s: no replication connection %q from %s (run `cairn accounts seed`)", s.Name, name, peer.Name))
				st.Connections = append(st.Connections, cs)
				continue
			}
			cs.IO, cs.SQL, cs.LagSeconds, cs.Filter = c.IORunning, c.SQLRunning, c.SecondsBehind, c.DoTable
			cs.Running = c.running()
			cs.FilterOK = site.FilterOK(c.DoTable)
			cs.GTID = strings.EqualFold(c.UsingGTID, "Slave_Pos")
			cs.Error = c.errorText()
			if pr := raws[peer.Name]; pr != nil {
				src, okS := ParseGTIDPos(pr.BinlogPos)[prefix[peer.Name]]
				have := ParseGTIDPos(c.GTIDSlavePos)[prefix[peer.Name]]
				if okS {
					lag := max(src-have, 0)
					cs.LagTransactions = &lag
				}
			}
			if raw.ForeignWrites != nil {
				fw := raw.ForeignWrites[prefix[peer.Name]]
				cs.ForeignWrites = &fw
			}
			if p := c.Problem(peer.Name, prefix[peer.Name]); p != "" {
				st.Problems = append(st.Problems, fmt.Sprintf("site %s: %s", s.Name, p))
			}
			st.Connections = append(st.Connections, cs)
		}
		var extra []string
		for n := range byName {
			extra = append(extra, n)
		}
		sort.Strings(extra)
		st.Sites[i].Extra = extra
		if len(extra) > 0 {
			st.Problems = append(st.Problems, fmt.Sprintf("site %s: replication connections no site of the spec explains: %s", s.Name, strings.Join(extra, ", ")))
		}
	}
}

// diff compares the account rows of every reachable site.
func (st *Status) diff(spec *cluster.Spec, raws map[string]*Raw) {
	x := indexAccounts(spec, raws)
	ids := make([]int64, 0, len(x.rows))
	for id := range x.rows {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		st.noteMissing(x, id)
		st.noteMismatches(id, x.rows[id])
	}
	st.noteConflicts(x.keys)
	st.diffProblems()
}

// accountIndex is the account rows of the reachable sites, by ID and by
// key, and each GTID domain's (serial prefix's) site.
type accountIndex struct {
	origin    map[int64]string
	reachable []string
	rows      map[int64]map[string]Account // id -> site -> row
	keys      map[string]map[string]int64  // key -> site -> id
}

// indexAccounts indexes the rows of every site whose rows were read.
func indexAccounts(spec *cluster.Spec, raws map[string]*Raw) *accountIndex {
	x := &accountIndex{origin: map[int64]string{}, rows: map[int64]map[string]Account{}, keys: map[string]map[string]int64{}}
	for _, s := range spec.Sites {
		x.origin[int64(s.SerialPrefix.Value())] = s.Name
	}
	for _, s := range spec.Sites {
		raw := raws[s.Name]
		if raw == nil {
			continue
		}
		x.reachable = append(x.reachable, s.Name)
		for _, a := range raw.Accounts {
			if x.rows[a.ID] == nil {
				x.rows[a.ID] = map[string]Account{}
			}
			x.rows[a.ID][s.Name] = a
			if x.keys[a.KeySHA] == nil {
				x.keys[a.KeySHA] = map[string]int64{}
			}
			x.keys[a.KeySHA][s.Name] = a.ID
		}
	}
	return x
}

// noteMissing notes the reachable sites that lack account id. A row that a
// site skipped because it holds the key under its own ID is a conflict,
// reported once by noteConflicts, not a missing account.
func (st *Status) noteMissing(x *accountIndex, id int64) {
	by := x.rows[id]
	var sha string
	for _, a := range by {
		sha = a.KeySHA
	}
	var missing []string
	for _, s := range x.reachable {
		if _, ok := by[s]; ok {
			continue
		}
		if other, ok := x.keys[sha][s]; ok && other != id {
			continue // the site holds this key under its own ID: a conflict
		}
		missing = append(missing, s)
	}
	if len(missing) > 0 {
		st.Missing = append(st.Missing, Missing{ID: id, Origin: x.origin[int64(site.AccountIDSite(id))], MissingAt: missing})
	}
}

// noteMismatches notes the fields (key, status) in which the sites' rows of
// account id differ.
func (st *Status) noteMismatches(id int64, by map[string]Account) {
	for _, f := range []struct {
		name string
		get  func(Account) string
	}{{"key", func(a Account) string { return a.KeySHA }}, {"status", func(a Account) string { return a.Status }}} {
		vals := map[string]string{}
		distinct := map[string]bool{}
		for s, a := range by {
			vals[s] = f.get(a)
			distinct[f.get(a)] = true
		}
		if len(distinct) > 1 {
			st.Mismatches = append(st.Mismatches, Mismatch{ID: id, Field: f.name, BySite: vals})
		}
	}
}

// noteConflicts notes the keys registered under different IDs at different
// sites.
func (st *Status) noteConflicts(keys map[string]map[string]int64) {
	shas := make([]string, 0, len(keys))
	for k := range keys {
		shas = append(shas, k)
	}
	sort.Strings(shas)
	for _, k := range shas {
		distinct := map[int64]bool{}
		for _, id := range keys[k] {
			distinct[id] = true
		}
		if len(distinct) > 1 {
			st.Conflicts = append(st.Conflicts, Conflict{KeySHA: k, IDs: keys[k]})
		}
	}
}

// diffProblems sums up the missing accounts, mismatches and conflicts.
func (st *Status) diffProblems() {
	if n := len(st.Missing); n > 0 {
		st.Problems = append(st.Problems, fmt.Sprintf("%d accounts missing at some site (first: id %d missing at %s)", n, st.Missing[0].ID, strings.Join(st.Missing[0].MissingAt, ", ")))
	}
	if n := len(st.Mismatches); n > 0 {
		st.Problems = append(st.Problems, fmt.Sprintf("%d accounts differ between sites (first: id %d, %s)", n, st.Mismatches[0].ID, st.Mismatches[0].Field))
	}
	if n := len(st.Conflicts); n > 0 {
		st.Problems = append(st.Problems, fmt.Sprintf("%d keys registered under several IDs (each site keeps its own; a client keeps working only where its ID exists)", n))
	}
}

// ParseGTIDPos reads a MariaDB GTID position ("1-1-28,2-2-20") into the
// last sequence number per domain.
func ParseGTIDPos(pos string) map[int64]int64 {
	out := map[int64]int64{}
	for _, part := range strings.Split(pos, ",") {
		f := strings.Split(strings.TrimSpace(part), "-")
		if len(f) != 3 {
			continue
		}
		d, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 == nil && err2 == nil {
			out[d] = n
		}
	}
	return out
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	return s
}
