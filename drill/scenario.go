// Package drill rehearses disaster recovery against a running cluster:
// it injects real faults on a timeline, runs ACME clients through the
// ACME name meanwhile, measures every phase (fault, first failed probe,
// site down, DNS committed, each server serving it, first client success)
// and writes a report (JSON, Markdown, self-contained HTML with an SVG
// timeline). Every fault it injects it restores, also when interrupted.
package drill

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cairn-pki/cairn/cluster"
)

// Scenario is one drill: faults on a timeline, the client workload, and
// what must hold for it to pass.
type Scenario struct {
	Name        string   `yaml:"name" json:"name"`
	Description string   `yaml:"description" json:"description"`
	Timeline    []Step   `yaml:"timeline" json:"timeline"`
	Duration    Duration `yaml:"duration" json:"duration"` // from the start of the workload to the end
	Workload    Workload `yaml:"workload" json:"workload"`
	Pass        Pass     `yaml:"pass" json:"pass"`
	// SteadyState is the hypothesis checked before (every site healthy,
	// none drained; real clients issue) and after the faults are restored
	// (every site healthy again within Within, default 3m).
	// Accounts: account-replication checks (docs/accounts.md).
	Accounts AccountsStep `yaml:"accounts,omitempty" json:"accounts"`
	// Revocation: revoke certificates of the faulted site while it is
	// down (pass.revoked).
	Revocation  RevocationStep `yaml:"revocation,omitempty" json:"revocation"`
	SteadyState struct {
		Within Duration `yaml:"within,omitempty" json:"within"`
	} `yaml:"steadyState,omitempty" json:"steadyState"`
}

// SteadyWithin is how long the cluster has to be healthy again after the
// faults are restored.
func (s *Scenario) SteadyWithin() time.Duration {
	if s.SteadyState.Within.Duration > 0 {
		return s.SteadyState.Within.Duration
	}
	return 3 * time.Minute
}

// AccountsStep: at ConflictAt, one new key registers at the faulted site
// and at another site, each addressed directly (both sides of a
// replication partition).
type AccountsStep struct {
	ConflictAt Duration `yaml:"conflictAt,omitempty" json:"conflictAt"`
}

// Step is one fault on the timeline.
type Step struct {
	At    Duration `yaml:"at" json:"at"`
	Fault string   `yaml:"fault" json:"fault"` // crash, hang, stop, hsm, partition, flap, toxic
	// Site: a site name, "active" (the site the ACME name points to when
	// the drill starts), "standby" (the best other one), "all", or
	// "cluster" (the DNS servers and the controller).
	Site      string   `yaml:"site" json:"site"`
	Component string   `yaml:"component,omitempty" json:"component,omitempty"`
	For       Duration `yaml:"for,omitempty" json:"for,omitempty"` // then restore; 0: at the end
	// flap: down and up phases, and the signal: kill (default) or stop.
	Down   Duration `yaml:"down,omitempty" json:"down,omitempty"`
	Up     Duration `yaml:"up,omitempty" json:"up,omitempty"`
	Signal string   `yaml:"signal,omitempty" json:"signal,omitempty"`
	// toxic: toxiproxy in front of the WFE; latency (Latency ± Jitter),
	// timeout (no answer; closed after Latency, 0 = never) or reset.
	Toxic   string   `yaml:"toxic,omitempty" json:"toxic,omitempty"`
	Latency Duration `yaml:"latency,omitempty" json:"latency,omitempty"`
	Jitter  Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// upgrade (site: cluster): `cairn upgrade apply` to Boulder release
	// To ("" keeps each site's), each site watched for Canary and gated
	// by Gate deep-probe rounds (default failover.upAfter); Broken rolls
	// out a broken release instead (its RA cannot reach its CA).
	To     string   `yaml:"to,omitempty" json:"to,omitempty"`
	Canary Duration `yaml:"canary,omitempty" json:"canary,omitempty"`
	Gate   int      `yaml:"gate,omitempty" json:"gate,omitempty"`
	Broken bool     `yaml:"broken,omitempty" json:"broken,omitempty"`
}

// Workload is the built-in clients' load through the ACME name.
type Workload struct {
	Every    Duration `yaml:"every" json:"every"`       // one new issuance per client this often
	Policies []string `yaml:"policies" json:"policies"` // retry windows: none, 30s, 2m, ...
	// Clients: real ACME clients (certbot, lego) that issue once before
	// the fault and renew with their stored account every RenewEvery.
	Clients    []string `yaml:"clients,omitempty" json:"clients,omitempty"`
	RenewEvery Duration `yaml:"renewEvery,omitempty" json:"renewEvery,omitempty"`
}

// Pass criteria; unset ones are not checked.
type Pass struct {
	Moved              bool           `yaml:"moved,omitempty" json:"moved,omitempty"`               // the name left the faulted site
	MaxMoves           *int           `yaml:"maxMoves,omitempty" json:"maxMoves,omitempty"`         // moves during the drill
	DNSUnchanged       bool           `yaml:"dnsUnchanged,omitempty" json:"dnsUnchanged,omitempty"` // no DNS update while the faults were in place
	Alert              bool           `yaml:"alert,omitempty" json:"alert,omitempty"`               // the no-healthy-site alert was raised
	FirstSuccessWithin Duration       `yaml:"firstSuccessWithin,omitempty" json:"firstSuccessWithin,omitempty"`
	MaxLost            map[string]int `yaml:"maxLost,omitempty" json:"maxLost,omitempty"` // per policy: issuances given up
	// ClientsRenew: every real client that renewed before the fault renews
	// again, with its stored account, within TTL + 30 s after the name
	// settled.
	ClientsRenew bool `yaml:"clientsRenew,omitempty" json:"clientsRenew,omitempty"`
	// AccountsFlow: after the restore, replication runs everywhere, cairn
	// accounts status reports the conflict of accounts.conflictAt (if
	// any), and an account made at the faulted site reaches every site
	// within a minute.
	AccountsFlow bool `yaml:"accountsFlow,omitempty" json:"accountsFlow,omitempty"`
	// Revoked: the certificate revoked with cairn revoke while its site was
	// down is in that site's published CRL after it returns, before the
	// name moved back to it; the one revoked through ACME went through once
	// the site was back, and while it was down the answer was never 404.
	Revoked bool `yaml:"revoked,omitempty" json:"revoked,omitempty"`
	// CRLsAvailable: a relying party's openssl verify -crl_check of the
	// faulted site's valid certificate, with its CRL fetched through its
	// URL, passed every time while the faults were in place.
	CRLsAvailable bool `yaml:"crlsAvailable,omitempty" json:"crlsAvailable,omitempty"`
	// Upgrade: how the timeline's upgrade must end: done (every site on
	// the new release) or rolled-back (the gate stopped it at the first
	// site, which was rolled back; no other site was touched).
	Upgrade string `yaml:"upgrade,omitempty" json:"upgrade,omitempty"`
	// MaxRealFailures: failed runs of the real clients (certbot, lego)
	// allowed, each kept its account.
	MaxRealFailures *int `yaml:"maxRealFailures,omitempty" json:"maxRealFailures,omitempty"`
}

// Duration is a time.Duration written like 30s or 2m.
type Duration struct{ time.Duration }

// UnmarshalYAML reads 30s, 2m, 1m30s.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 30s or 2m", n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes it back the same way.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalJSON reads seconds, as MarshalJSON writes them.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s float64
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d.Duration = time.Duration(s * float64(time.Second))
	return nil
}

// MarshalJSON writes seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%g", d.Seconds())), nil
}

//go:embed scenarios/*.yaml
var builtin embed.FS

// Builtins lists the scenarios shipped with cairn, by name.
func Builtins() ([]*Scenario, error) {
	entries, err := fs.ReadDir(builtin, "scenarios")
	if err != nil {
		return nil, err
	}
	var out []*Scenario
	for _, e := range entries {
		b, _ := builtin.ReadFile("scenarios/" + e.Name())
		s, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("built-in %s: %w", e.Name(), err)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Load finds a scenario: a built-in by name, or a YAML file.
func Load(nameOrFile string) (*Scenario, error) {
	if strings.HasSuffix(nameOrFile, ".yaml") || strings.HasSuffix(nameOrFile, ".yml") || strings.ContainsRune(nameOrFile, filepath.Separator) {
		b, err := os.ReadFile(nameOrFile)
		if err != nil {
			return nil, err
		}
		s, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nameOrFile, err)
		}
		return s, nil
	}
	all, err := Builtins()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range all {
		if s.Name == nameOrFile {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("no scenario %q: built-ins are %s, or give a .yaml file", nameOrFile, strings.Join(names, ", "))
}

// Parse reads and checks a scenario; unknown fields are errors, and the
// error names the field and the fix.
func Parse(b []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Scenario) check() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, cluster.FieldMsg(format, args...)))
	}
	if s.Name == "" {
		add("name", "is required")
	}
	if s.Duration.Duration <= 0 {
		add("duration", "is required (e.g. 90s): how long the drill runs after the steady-state check")
	}
	if s.Workload.Every.Duration <= 0 {
		s.Workload.Every.Duration = 2 * time.Second
	}
	if len(s.Workload.Policies) == 0 {
		s.Workload.Policies = []string{"none", "30s", "2m"}
	}
	for i, p := range s.Workload.Policies {
		if _, err := RetryWindow(p); err != nil {
			add(fmt.Sprintf("workload.policies[%d]", i), "%q is not a retry window: use none or a duration like 30s", p)
		}
	}
	for i, c := range s.Workload.Clients {
		if !slices.Contains(RealClients, c) {
			add(fmt.Sprintf("workload.clients[%d]", i), "%q is not a client cairn can run: use %s", c, strings.Join(RealClients, ", "))
		}
	}
	if s.Workload.RenewEvery.Duration <= 0 {
		s.Workload.RenewEvery.Duration = 10 * time.Second
	}
	for p := range s.Pass.MaxLost {
		if !slices.Contains(s.Workload.Policies, p) {
			add("pass.maxLost."+p, "no client runs with policy %q; add it to workload.policies", p)
		}
	}
	if c := s.Accounts.ConflictAt.Duration; c < 0 || c >= s.Duration.Duration {
		add("accounts.conflictAt", "%s is outside the drill (duration %s)", s.Accounts.ConflictAt, s.Duration)
	}
	switch s.Pass.Upgrade {
	case "":
	case UpgradeDone, UpgradeRolledBack:
		if !slices.ContainsFunc(s.Timeline, func(st Step) bool { return st.Fault == "upgrade" }) {
			add("pass.upgrade", "needs an upgrade step in the timeline")
		}
	default:
		add("pass.upgrade", "%q: use %s or %s", s.Pass.Upgrade, UpgradeDone, UpgradeRolledBack)
	}
	for i, st := range s.Timeline {
		f := fmt.Sprintf("timeline[%d]", i)
		k, known := faultKindOf(st.Fault)
		if !known {
			add(f+".fault", "%q is not a fault: use one of %s", st.Fault, faultNames())
		}
		if st.Site == "" {
			add(f+".site", "is required: a site name, active, standby, all or cluster")
		}
		if k.Component && st.Component == "" {
			add(f+".component", "is required for %s (e.g. wfe, sa, mariadb, redis, ct-test-srv; cluster: dns-primary, controller)", st.Fault)
		}
		if k.SiteOnly && st.Site == "cluster" {
			add(f+".site", "%s applies to a site, not the cluster", st.Fault)
		}
		if k.Check != nil {
			k.Check(st, func(field, format string, args ...any) { add(f+field, format, args...) })
		}
		if st.Signal != "" && st.Signal != "kill" && st.Signal != "stop" {
			add(f+".signal", "%q: use kill or stop", st.Signal)
		}
		if st.At.Duration < 0 || st.At.Duration >= s.Duration.Duration {
			add(f+".at", "%s is outside the drill (duration %s)", st.At, s.Duration)
		}
	}
	return errors.Join(errs...)
}

// RetryWindow parses a policy: "none" is 0.
func RetryWindow(p string) (time.Duration, error) {
	if p == "none" {
		return 0, nil
	}
	d, err := time.ParseDuration(p)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bad policy %q", p)
	}
	return d, nil
}
