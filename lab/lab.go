// Package lab runs the embedded default: every rendered site of a cluster
// plus the cluster's own DNS on loopback addresses of one machine, as
// supervised processes with per-process logs and PID files (run by package
// hostrun). It renders nothing itself: bundles come from package site.
package lab

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
	"github.com/cairn-pki/cairn/upgrade"
)

// Lab is one cluster's lab in the spec's directory.
type Lab struct {
	Spec *cluster.Spec
	Log  io.Writer // progress lines
	// Cairn is the cairn executable the lab starts for its HTTP fronts;
	// empty means this process's own executable.
	Cairn string
}

func (l *Lab) logf(format string, args ...any) { fmt.Fprintf(l.Log, format+"\n", args...) }

// ClusterSpec is the lab's spec (what a drill acts on).
func (l *Lab) ClusterSpec() *cluster.Spec { return l.Spec }

// Output is where the lab writes its progress lines.
func (l *Lab) Output() io.Writer { return l.Log }

// UpgradeOptions are `cairn upgrade apply`'s options for the lab's sites
// (a drill's upgrade fault rolls releases with them too).
func (l *Lab) UpgradeOptions(context.Context) (upgrade.ApplyOptions, error) {
	return upgrade.ForLab(l.Spec, l, l.Log, "")
}

// Layout under the spec's directory.
func (l *Lab) sitesDir() string           { return l.Spec.Path("sites") }
func (l *Lab) siteDir(name string) string { return filepath.Join(l.sitesDir(), name) }

// SiteDir is where the lab keeps (and runs) site name's bundle.
func (l *Lab) SiteDir(name string) string { return l.siteDir(name) }
func (l *Lab) clusterDir() string         { return l.Spec.Path("cluster") }
func (l *Lab) statePath() string          { return l.Spec.Path("lab-state.json") }

// labState remembers what up changed on the machine, so down undoes
// exactly that.
type labState struct {
	Aliases []string `json:"aliases"`
	// Bridge and Hosts: the client hosts (hosts.go).
	Bridge string       `json:"bridge,omitempty"`
	Hosts  []ClientHost `json:"hosts,omitempty"`
}

// empty reports whether up changed nothing that down must undo.
func (st labState) empty() bool { return len(st.Aliases) == 0 && st.Bridge == "" && len(st.Hosts) == 0 }

func (l *Lab) readState() labState {
	var st labState
	if b, err := os.ReadFile(l.statePath()); err == nil {
		json.Unmarshal(b, &st)
	}
	return st
}

func (l *Lab) writeState(st labState) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	return fsutil.WriteFileAtomic(l.statePath(), append(b, '\n'), 0o644)
}

// UpOptions for Up.
type UpOptions struct {
	// Reset removes the previous lab's data, keys and PKI first.
	Reset bool
	// Restart starts a supervisor that restarts exited processes (off by
	// default: drills need real crashes).
	Restart bool
}

// Summary is what a user needs to use the lab.
type Summary struct {
	ACMEName     string        `json:"acmeName"`
	DirectoryURL string        `json:"directory"`
	DNS          string        `json:"dns"`
	DNSServers   []string      `json:"dnsServers"`
	RootCert     string        `json:"rootCert"`
	ClientKey    string        `json:"clientTSIGKey"`
	Zone         string        `json:"zone"`
	Sites        []SiteSummary `json:"sites"`
	// StatusURL is the controller's status page; PrometheusURL the lab's
	// Prometheus ("" when monitoring.prometheus is off).
	StatusURL     string        `json:"statusURL"`
	PrometheusURL string        `json:"prometheusURL,omitempty"`
	Elapsed       time.Duration `json:"-"`
}

// SiteSummary is one site's entry point.
type SiteSummary struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Directory string `json:"directory"`
}

// generated lists what the lab creates under the spec directory.
var generated = []string{"sites", "cluster", "lab-state.json", "lab-state.lock", "upgrade-state.json", "upgrade-backups"}

// Up builds the binaries if missing, creates the PKI, renders every bundle
// and starts the cluster DNS and all sites. Data and keys of an earlier
// run are reused unless opts.Reset.
func (l *Lab) Up(ctx context.Context, opts UpOptions) (*Summary, error) {
	start := time.Now()
	if opts.Reset {
		if err := l.reset(ctx); err != nil {
			return nil, err
		}
	}
	// Traversable: MariaDB runs as its own user inside.
	if err := os.MkdirAll(l.sitesDir(), 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(l.sitesDir(), 0o755); err != nil {
		return nil, err
	}
	r, err := l.render(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	bins, pki, cb, bundles := r.Bins, r.PKI, r.Cluster, r.Sites
	l.logf("rendered %d sites and the cluster DNS in %.1fs", len(bundles), time.Since(start).Seconds())
	if err := l.refuseLostSites(bundles); err != nil {
		return nil, err
	}
	if err := l.addAliases(cb, bundles); err != nil {
		return nil, err
	}
	resolve := l.resolver(bins)
	if err := l.startCluster(ctx, cb, resolve); err != nil {
		return nil, err
	}
	if err := l.startSites(ctx, bundles, resolve); err != nil {
		return nil, err
	}
	if opts.Restart {
		if err := l.startProc(ctx, l.supervisorProc(), resolve); err != nil {
			return nil, err
		}
	}
	if err := l.finishUp(ctx, cb, bundles, bins["admin"], resolve); err != nil {
		return nil, err
	}
	sum := l.summary(pki.RootCertFile(), cb, bundles)
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// render renders the PKI, the cluster bundle and every site's bundle.
func (l *Lab) render(ctx context.Context) (*site.Rendered, error) {
	self := l.Cairn
	if self == "" {
		self, _ = os.Executable()
	}
	return site.RenderAll(ctx, site.AllOptions{Spec: l.Spec, Log: l.Log, Binaries: []string{"boulder", "ct-test-srv", "s3-test-srv", "admin"}, Self: self,
		ClusterOut: l.clusterDir(), PublicDir: l.Spec.Path(filepath.Join(l.Spec.PKI.Dir, "public")), SpecFile: l.specFile(), SiteOut: l.siteDir,
		Prometheus: site.WantsPrometheus(l.Spec)})
}

// reset stops the previous lab and removes its data, keys and PKI.
func (l *Lab) reset(ctx context.Context) error {
	if err := l.Down(ctx); err != nil {
		return err
	}
	for _, g := range append(generated, l.Spec.PKI.Dir, filepath.Dir(l.Spec.DNS.TSIG.ControllerKeyFile), cluster.DefaultSecretsDir) {
		if g == "." || g == "" {
			continue
		}
		os.RemoveAll(l.Spec.Path(g))
	}
	l.logf("reset: removed the previous lab's data, keys and PKI")
	return nil
}

// addAliases adds the addresses BIND needs to lo, recording each one it
// added in the lab state (as soon as it is added) for Down to remove.
func (l *Lab) addAliases(cb *site.ClusterBundle, bundles []*site.Bundle) error {
	unlock, err := l.lockState()
	if err != nil {
		return err
	}
	defer unlock()
	st := l.readState()
	aliases := cb.BindAddresses
	for _, b := range bundles {
		aliases = append(aliases, b.BindAddresses...)
	}
	for _, ip := range aliases {
		added, err := hostrun.AddLoopback(ip)
		if err != nil {
			return err
		}
		if added {
			st.Aliases = append(st.Aliases, ip)
			if err := l.writeState(st); err != nil {
				return err
			}
		}
	}
	return nil
}

// startCluster starts the cluster's processes (its DNS and PKI front) in
// order; the failover controller starts last, in finishUp.
func (l *Lab) startCluster(ctx context.Context, cb *site.ClusterBundle, resolve func(string) (string, error)) error {
	// A running process whose configuration the render changed (the
	// primary DNS server after `cairn dns key add`) restarts to read it.
	if err := hostrun.StopChanged(cb, l.logf); err != nil {
		return err
	}
	for _, p := range cb.Processes {
		if err := l.startProc(ctx, hostrun.Proc{Process: p, Root: cb.Root}, resolve); err != nil {
			return err
		}
	}
	return nil
}

// startSites starts the sites in parallel; inside a site, in dependency
// order.
func (l *Lab) startSites(ctx context.Context, bundles []*site.Bundle, resolve func(string) (string, error)) error {
	var wg sync.WaitGroup
	errs := make([]error, len(bundles))
	for i, b := range bundles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.startSite(ctx, b, resolve)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// finishUp runs once every site is up: the probe accounts exempted from
// rate limits, replication reconnected, the failover controller started.
func (l *Lab) finishUp(ctx context.Context, cb *site.ClusterBundle, bundles []*site.Bundle, admin string, resolve func(string) (string, error)) error {
	if err := l.exemptProbeAccounts(ctx, admin); err != nil {
		return err
	}
	// Sites start in parallel: a replica that tried a peer before the
	// peer's users existed waits MASTER_CONNECT_RETRY (10 s) before trying
	// again. Every database is loaded now: reconnect at once.
	for _, b := range bundles {
		if len(b.Database.Connections) > 0 {
			if err := l.DBExec(ctx, b.Site, "STOP ALL SLAVES; START ALL SLAVES"); err != nil {
				return err
			}
		}
	}
	// The failover controller, so the lab fails over by itself.
	if cb.Controller != nil {
		if err := l.startProc(ctx, hostrun.Proc{Process: *cb.Controller, Root: cb.Root}, resolve); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) startProc(ctx context.Context, p hostrun.Proc, resolve func(string) (string, error)) error {
	return hostrun.StartProc(ctx, p, resolve, l.logf)
}

func (l *Lab) startSite(ctx context.Context, b *site.Bundle, resolve func(string) (string, error)) error {
	return hostrun.StartSite(ctx, b, l.resolverFor(ctx, b, resolve), l.logf)
}

// siteResolver is the resolver of one site's processes (the Boulder
// binaries built if missing).
func (l *Lab) siteResolver(ctx context.Context, b *site.Bundle) (func(string) (string, error), error) {
	bins, err := boulderbin.Ensure(ctx, l.Log, "boulder", "ct-test-srv", "s3-test-srv")
	if err != nil {
		return nil, err
	}
	return l.resolverFor(ctx, b, l.resolver(bins)), nil
}

// resolverFor is resolve for one site: its Boulder components run the
// release its bundle names (built into that release's own directory the
// first time), so sites on different releases run side by side.
func (l *Lab) resolverFor(ctx context.Context, b *site.Bundle, resolve func(string) (string, error)) func(string) (string, error) {
	if b == nil || b.BoulderVersion == "" || b.BoulderVersion == boulderbin.Version {
		return resolve
	}
	return func(name string) (string, error) {
		if name != "boulder" {
			return resolve(name)
		}
		bins, err := boulderbin.EnsureVersion(ctx, l.Log, b.BoulderVersion, "boulder")
		if err != nil {
			return "", err
		}
		return bins["boulder"], nil
	}
}

// resolver maps a bundle's program names to executables.
func (l *Lab) resolver(bins map[string]string) func(string) (string, error) {
	self := l.Cairn
	if self == "" {
		self, _ = os.Executable()
	}
	return func(name string) (string, error) {
		if p, ok := bins[name]; ok {
			return p, nil
		}
		if name == "cairn" {
			if self == "" {
				return "", errors.New("cannot find the cairn executable")
			}
			return self, nil
		}
		if name == site.FrontProgram {
			return site.FrontNextTo(self)
		}
		return hostrun.LookProgram(name)
	}
}

func (l *Lab) summary(rootCert string, cb *site.ClusterBundle, bundles []*site.Bundle) *Summary {
	s := &Summary{ACMEName: l.Spec.ACME.Name, DirectoryURL: bundles[0].DirectoryURL, RootCert: rootCert,
		ClientKey: cb.ClientKey, Zone: cb.Zone}
	s.StatusURL, s.PrometheusURL = l.urls()
	for _, srv := range l.Spec.DNS.Servers {
		s.DNSServers = append(s.DNSServers, srv.Address)
		if srv.Role == "primary" {
			s.DNS = srv.Address
		}
	}
	for _, b := range bundles {
		s.Sites = append(s.Sites, SiteSummary{Name: b.Site, Address: b.Public, Directory: b.SiteURL})
	}
	return s
}

// urls are the controller's status page and the lab's Prometheus ("" when
// monitoring.prometheus is off).
func (l *Lab) urls() (status, prometheus string) {
	status = "http://" + l.Spec.Failover.Listen + "/"
	if site.WantsPrometheus(l.Spec) {
		prometheus = "http://" + l.Spec.Monitoring.Prometheus + "/"
	}
	return status, prometheus
}

// bundles reads every rendered site bundle, in spec order, then any others.
func (l *Lab) bundles() ([]*site.Bundle, error) {
	var out []*site.Bundle
	seen := map[string]bool{}
	for _, s := range l.Spec.Sites {
		b, err := site.ReadBundle(l.siteDir(s.Name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		seen[s.Name] = true
	}
	entries, _ := os.ReadDir(l.sitesDir())
	for _, e := range entries {
		if e.IsDir() && !seen[e.Name()] {
			if b, err := site.ReadBundle(l.siteDir(e.Name())); err == nil {
				out = append(out, b)
			}
		}
	}
	return out, nil
}

// Down removes the client hosts (their names first, while the cluster
// DNS runs), stops every process the lab started, by PID, in reverse
// start order, and removes the loopback addresses it added. Data stays.
func (l *Lab) Down(ctx context.Context) error {
	if err := l.downHosts(ctx); err != nil {
		return err
	}
	// The supervisor first, or it would restart what is being stopped.
	if stopped, err := l.supervisorProc().Stop(5 * time.Second); err != nil {
		return err
	} else if stopped {
		l.logf("  stopped the supervisor")
	}
	if cb, err := site.ReadClusterBundle(l.clusterDir()); err == nil && cb.Controller != nil {
		if stopped, _ := (hostrun.Proc{Process: *cb.Controller, Root: cb.Root}).Stop(10 * time.Second); stopped {
			l.logf("  stopped cluster/controller")
		}
	}
	bundles, err := l.bundles()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, b := range bundles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := len(b.Processes) - 1; i >= 0; i-- {
				p := hostrun.Proc{Process: b.Processes[i], Root: b.Root}
				if stopped, err := p.Stop(10 * time.Second); err != nil {
					l.logf("  %s/%s: %v", b.Site, p.Name, err)
				} else if stopped {
					l.logf("  stopped %s/%s", b.Site, p.Name)
				}
			}
		}()
	}
	wg.Wait()
	if cb, err := site.ReadClusterBundle(l.clusterDir()); err == nil {
		for i := len(cb.Processes) - 1; i >= 0; i-- {
			p := hostrun.Proc{Process: cb.Processes[i], Root: cb.Root}
			if stopped, _ := p.Stop(10 * time.Second); stopped {
				l.logf("  stopped cluster/%s", p.Name)
			}
		}
	}
	unlock, err := l.lockState()
	if err != nil {
		return err
	}
	defer unlock()
	st := l.readState()
	var left []string
	for _, ip := range st.Aliases {
		if err := hostrun.RemoveLoopback(ip); err != nil {
			l.logf("  %v", err)
			left = append(left, ip)
		}
	}
	st.Aliases = left
	if st.empty() {
		os.Remove(l.statePath())
		return nil
	}
	return l.writeState(st)
}

// Status is the lab as `cairn lab status` shows it.
type Status struct {
	ACMEName   string       `json:"acmeName"`
	DNS        string       `json:"dns"`
	DNSServers []string     `json:"dnsServers"`
	RootCert   string       `json:"rootCert"`
	Cluster    []ProcStatus `json:"cluster"`
	Sites      []SiteStatus `json:"sites"`
	// StatusURL and PrometheusURL as in Summary.
	StatusURL     string `json:"statusURL"`
	PrometheusURL string `json:"prometheusURL,omitempty"`
}

// SiteStatus is one site's processes and whether its directory answers.
type SiteStatus struct {
	Name           string       `json:"name"`
	Address        string       `json:"address"`
	Directory      string       `json:"directory"`
	DirectoryOK    bool         `json:"directoryOK"`
	DirectoryError string       `json:"directoryError,omitempty"`
	Processes      []ProcStatus `json:"processes"`
	// BoulderVersion and Generation: what its rendered bundle runs.
	BoulderVersion string `json:"boulderVersion"`
	Generation     string `json:"generation"`
}

// ProcStatus is one process.
type ProcStatus struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"`
	Up     bool   `json:"up"`
	RSSKB  int    `json:"rssKB"`
	PSSKB  int    `json:"pssKB"`
	Listen string `json:"listen"`
}

func procStatus(p hostrun.Proc) ProcStatus {
	pid, up := p.Running()
	ps := ProcStatus{Name: p.Name, Up: up, Listen: p.Listen}
	if up {
		ps.PID, ps.RSSKB, ps.PSSKB = pid, hostrun.RSSKB(pid), hostrun.PSSKB(pid)
	}
	return ps
}

// Status reports every process and probes each site's directory directly
// (its address, the ACME name as SNI, trusting only the cluster root).
func (l *Lab) Status(ctx context.Context) (*Status, error) {
	rootFile := l.Spec.Path(filepath.Join(l.Spec.PKI.Dir, "public", "root.cert.pem"))
	st := &Status{ACMEName: l.Spec.ACME.Name, RootCert: rootFile, Cluster: []ProcStatus{}, Sites: []SiteStatus{}}
	st.StatusURL, st.PrometheusURL = l.urls()
	for _, srv := range l.Spec.DNS.Servers {
		st.DNSServers = append(st.DNSServers, srv.Address)
		if srv.Role == "primary" {
			st.DNS = srv.Address
		}
	}
	if cb, err := site.ReadClusterBundle(l.clusterDir()); err == nil {
		for _, p := range cb.All() {
			st.Cluster = append(st.Cluster, procStatus(hostrun.Proc{Process: p, Root: cb.Root}))
		}
	}
	bundles, err := l.bundles()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(rootFile); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	for _, b := range bundles {
		ss := SiteStatus{Name: b.Site, Address: b.Public, Directory: b.SiteURL, Processes: []ProcStatus{}, BoulderVersion: b.BoulderVersion, Generation: b.Generation}
		for _, p := range b.Processes {
			ss.Processes = append(ss.Processes, procStatus(hostrun.Proc{Process: p, Root: b.Root}))
		}
		if err := checkDirectory(ctx, b, l.Spec, pool); err != nil {
			ss.DirectoryError = err.Error()
		} else {
			ss.DirectoryOK = true
		}
		st.Sites = append(st.Sites, ss)
	}
	return st, nil
}

// checkDirectory runs the health check's directory probe against the
// site's own address, with the ACME name as TLS server name.
func checkDirectory(ctx context.Context, b *site.Bundle, spec *cluster.Spec, roots *x509.CertPool) error {
	t := &healthcheck.Target{Site: b.Site, DirectoryURL: b.DirectoryURL, ServerName: spec.ACME.Name, Roots: roots, StepTimeout: 2 * time.Second}
	for _, p := range b.Processes {
		if p.Name == site.ACMEFront {
			t.DialAddr = p.Listen
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if f := healthcheck.ProbeDirectory(ctx, t).FailedStep(); f != nil {
		return errors.New(f.Detail)
	}
	return nil
}

// LogFiles lists the log files of the selected site (all if empty) and
// component (all if empty).
func (l *Lab) LogFiles(siteName, component string) ([]string, error) {
	bundles, err := l.bundles()
	if err != nil {
		return nil, err
	}
	var files []string
	found := siteName == ""
	for _, b := range bundles {
		if siteName != "" && b.Site != siteName {
			continue
		}
		found = true
		for _, p := range b.Processes {
			if component == "" || p.Name == component {
				files = append(files, hostrun.Proc{Process: p, Root: b.Root}.LogFile())
			}
		}
	}
	if cb, err := site.ReadClusterBundle(l.clusterDir()); err == nil && (siteName == "" || siteName == "cluster") {
		found = true
		for _, p := range cb.All() {
			if component == "" || p.Name == component {
				files = append(files, hostrun.Proc{Process: p, Root: cb.Root}.LogFile())
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no site %q in the lab (sites: %s, or cluster)", siteName, strings.Join(l.Spec.SiteNames(), ", "))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no component %q (try sa, ca, ra, va, wfe, nonce, mariadb, redis, named, …)", component)
	}
	sort.Strings(files)
	return files, nil
}

// exemptProbeAccounts registers the health-probe account at every site
// and gives it per-account rate-limit overrides with Boulder's admin tool,
// so probing never eats into clients' limits nor is stopped by them.
func (l *Lab) exemptProbeAccounts(ctx context.Context, admin string) error {
	targets, err := healthcheck.SiteTargets(l.Spec)
	if err != nil {
		return err
	}
	for _, t := range targets {
		// A site whose component was just restarted may answer 500 while
		// its peers' gRPC connections back off: the site serves when this
		// ACME request (directory, nonce, account through WFE, RA, SA)
		// succeeds.
		id, err := untilServes(ctx, t.Site, l.logf, func() (int64, error) { return healthcheck.RegisterProbeAccount(ctx, t) })
		if err != nil {
			return err
		}
		// Boulder's add-limit-override refuses an override by account ID
		// alone at this version (it validates an empty identifier), so the
		// overrides go through import-limit-overrides.
		file := filepath.Join(l.siteDir(t.Site), "var", "probe-overrides.yml")
		if err := fsutil.WriteFileAtomic(file, site.ProbeOverridesYAML(id), 0o644); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, admin, "-config", filepath.Join(l.siteDir(t.Site), "etc", "admin.json"), "-dry-run=false",
			"import-limit-overrides", "-file", file)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("site %s: admin import-limit-overrides: %v: %s", t.Site, err, hostrun.LastLines(out, 2))
		}
		l.logf("  %-22s probe account %d exempted from per-account rate limits", t.Site+"/limits", id)
	}
	return nil
}

// serveWithin bounds how long `lab up` waits for a started site to serve.
const serveWithin = 90 * time.Second

// untilServes retries fn with backoff (0.25 s doubling to 5 s) until it
// succeeds or serveWithin passes.
func untilServes[T any](ctx context.Context, site string, logf func(string, ...any), fn func() (T, error)) (T, error) {
	deadline := time.Now().Add(serveWithin)
	wait := 250 * time.Millisecond
	for {
		v, err := fn()
		if err == nil || time.Now().Add(wait).After(deadline) {
			if err != nil {
				err = fmt.Errorf("site %s does not serve %s after its start: %w", site, serveWithin, err)
			}
			return v, err
		}
		logf("  %-22s not serving yet (%v); retrying in %s", site+"/serve", err, wait)
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// UpdateCRLs has the site's crl-updater build and publish every CRL shard
// now, instead of at its next period (as an operator would after an urgent
// revocation). It runs a one-shot crl-updater next to the daemon.
func (l *Lab) UpdateCRLs(ctx context.Context, siteName string) error {
	b, err := site.ReadBundle(l.siteDir(siteName))
	if err != nil {
		return fmt.Errorf("site %s: %w", siteName, err)
	}
	resolve, err := l.siteResolver(ctx, b)
	if err != nil {
		return err
	}
	return hostrun.UpdateCRLs(ctx, b, resolve)
}

// component finds one process of a site (or of the cluster: site "cluster").
func (l *Lab) component(siteName, name string) (hostrun.Proc, error) {
	if siteName == "cluster" {
		cb, err := site.ReadClusterBundle(l.clusterDir())
		if err != nil {
			return hostrun.Proc{}, err
		}
		for _, p := range cb.All() {
			if p.Name == name {
				return hostrun.Proc{Process: p, Root: cb.Root}, nil
			}
		}
		return hostrun.Proc{}, fmt.Errorf("no cluster component %q", name)
	}
	b, err := site.ReadBundle(l.siteDir(siteName))
	if err != nil {
		return hostrun.Proc{}, fmt.Errorf("site %q: %w", siteName, err)
	}
	for _, p := range b.Processes {
		if p.Name == name {
			return hostrun.NewProc(p, b.Root), nil
		}
	}
	return hostrun.Proc{}, fmt.Errorf("site %s has no component %q", siteName, name)
}

// StopComponent stops one process of the lab (by PID), as a crash or an
// operator would; it stays down until StartComponent.
func (l *Lab) StopComponent(siteName, name string) error {
	p, err := l.component(siteName, name)
	if err != nil {
		return err
	}
	_, err = p.Stop(10 * time.Second)
	return err
}

// StartComponent starts one stopped process and waits until it is ready.
func (l *Lab) StartComponent(ctx context.Context, siteName, name string) error {
	p, err := l.component(siteName, name)
	if err != nil {
		return err
	}
	var b *site.Bundle
	if siteName != "cluster" {
		b, _ = site.ReadBundle(l.siteDir(siteName))
	}
	resolve, err := l.siteResolver(ctx, b)
	if err != nil {
		return err
	}
	return l.startProc(ctx, p, resolve)
}

// SignalComponent sends sig to one running process of the lab (by its PID
// file, checked against the process start time) and returns the PID.
func (l *Lab) SignalComponent(siteName, name string, sig syscall.Signal) (int, error) {
	p, err := l.component(siteName, name)
	if err != nil {
		return 0, err
	}
	pid, ok := p.Running()
	if !ok {
		return 0, fmt.Errorf("%s/%s is not running", siteName, name)
	}
	return pid, syscall.Kill(pid, sig)
}

// ComponentRunning reports whether one process of the lab runs.
func (l *Lab) ComponentRunning(siteName, name string) bool {
	p, err := l.component(siteName, name)
	if err != nil {
		return false
	}
	_, ok := p.Running()
	return ok
}

// IsLab says whether the spec's sites were rendered here by the lab (so
// its databases can be restarted from here).
func (l *Lab) IsLab() bool {
	for _, s := range l.Spec.Sites {
		if !fsutil.Exists(filepath.Join(l.siteDir(s.Name), "bundle.json")) {
			return false
		}
	}
	return len(l.Spec.Sites) > 0
}
