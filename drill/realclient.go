package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/acmecli"
)

// RealClients are the ACME clients a scenario may run as users do.
// lego5 is lego v5 with default flags (ARI on), built by `make deps`.
var RealClients = []string{"certbot", "lego", "lego5"}

// RealRun is one run of certbot or lego.
type RealRun struct {
	Client  string    `json:"client"`
	Command string    `json:"command"` // issue (before the fault) or renew
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	OK      bool      `json:"ok"`
	Site    string    `json:"site,omitempty"`    // where the ACME name pointed when it started
	Account string    `json:"account,omitempty"` // the account URL in its store after the run
	Problem string    `json:"problem,omitempty"` // ACME problem type, or exit status
	Detail  string    `json:"detail,omitempty"`  // the line that says why
}

// realClient is certbot or lego with its own state directory (its stored
// account and certificate), run in a private mount namespace whose
// /etc/resolv.conf names the cluster's DNS, so it resolves the ACME name
// as any client of the cluster does (no cache: glibc and Go ask each time).
type realClient struct {
	name, dir, resolv string
	w                 *workload
	env               []string
	issue, renew      []string // the command lines
}

// checkRealClients splits a scenario's real clients into those installed
// here and, for each missing one, a line for the report saying so: a drill
// run from a `make lab` checkout (no lego v5: `make test` builds it) still
// judges the clients it has. What every real client needs (unshare, root,
// nsupdate for certbot's hooks) missing is an error.
func checkRealClients(names []string) (have, skipped []string, err error) {
	tools := []string{"unshare"}
	if slices.Contains(names, "certbot") {
		tools = append(tools, "nsupdate") // its DNS-01 hooks
	}
	for _, n := range tools {
		if _, err := exec.LookPath(n); err != nil {
			return nil, nil, fmt.Errorf("workload.clients: %s is not on PATH (install it, or remove the real clients from the scenario)", n)
		}
	}
	for _, n := range names {
		if _, err := acmecli.FindTool(n); err != nil {
			how := "install it"
			if n == "lego5" {
				how = "`make test` or `make deps` builds it"
			}
			skipped = append(skipped, fmt.Sprintf("%s: skipped, %s is not on PATH nor in .tools/bin next to cairn (%s)", n, n, how))
			continue
		}
		have = append(have, n)
	}
	if len(have) > 0 && os.Geteuid() != 0 {
		return nil, nil, fmt.Errorf("workload.clients: real clients run in a private mount namespace, which needs root (or remove them from the scenario)")
	}
	return have, skipped, nil
}

func (w *workload) newRealClients(names []string, state string) ([]*realClient, []string, error) {
	if len(names) == 0 {
		return nil, nil, nil
	}
	names, skipped, err := checkRealClients(names)
	if err != nil || len(names) == 0 {
		return nil, skipped, err
	}
	reals, err := w.realClients(names, state)
	return reals, skipped, err
}

// realClients sets up each of names (all installed) with its own state
// directory under state.
func (w *workload) realClients(names []string, state string) ([]*realClient, error) {
	pki, err := intermediates.OpenReadOnly(w.spec)
	if err != nil {
		return nil, err
	}
	primary, err := netip.ParseAddrPort(w.dnsUp.Server)
	if err != nil || primary.Port() != 53 {
		return nil, fmt.Errorf("workload.clients: the DNS primary %s must listen on port 53 for a resolv.conf", w.dnsUp.Server)
	}
	resolv := filepath.Join(state, "resolv.conf")
	if err := os.WriteFile(resolv, acmecli.ResolvConf(primary.Addr().String()), 0o644); err != nil {
		return nil, err
	}
	dir := "https://" + net.JoinHostPort(w.spec.ACME.Name, strconv.Itoa(w.spec.ACME.HTTPSPort)) + "/directory"
	var out []*realClient
	for _, n := range names {
		rc := &realClient{name: n, dir: filepath.Join(state, n), resolv: resolv, w: w}
		if err := os.MkdirAll(rc.dir, 0o700); err != nil {
			return nil, err
		}
		domain := fmt.Sprintf("drill-%s-%d.%s", n, time.Now().Unix(), w.spec.ACME.Zone)
		l := acmecli.Lego{Server: dir, Email: "drill@" + w.spec.ACME.Zone, Path: rc.dir, Resolver: w.dnsUp.Server, Domain: domain}
		switch n {
		case "lego":
			rc.issue, rc.renew = l.Args("run"), l.Args("renew", "--days", "10000", "--no-random-sleep")
			rc.env = acmecli.LegoEnv(os.Environ(), pki.RootCertFile(), w.dnsUp.Server, w.spec.ACME.Zone, w.dnsUp.Key)
		case "lego5":
			// Default flags but "renew now": ARI on, so a renewal after a
			// move names the old site's certificate in "replaces".
			prog, err := acmecli.FindTool(n)
			if err != nil {
				return nil, err
			}
			l5 := acmecli.Lego5{Lego: l, Program: prog}
			rc.issue, rc.renew = l5.Args(), l5.Args("--renew-force", "--no-random-sleep")
			rc.env = acmecli.Lego5Env(os.Environ(), pki.RootCertFile(), w.dnsUp.Server, w.spec.ACME.Zone, w.dnsUp.Key)
		default:
			c := acmecli.Certbot{Server: dir, Dir: rc.dir, Domain: domain, DNSHost: primary.Addr().String(), KeyFile: w.spec.Path(w.spec.DNS.TSIG.ClientKeyFile)}
			rc.issue, rc.renew = c.Certonly(), c.Renew()
			rc.env = acmecli.CertbotEnv(os.Environ(), pki.RootCertFile())
		}
		out = append(out, rc)
	}
	return out, nil
}

var problemRE = regexp.MustCompile(`urn:ietf:params:acme:error:[A-Za-z]+`)

// run runs one command (at most timeout) and says how it went.
func (rc *realClient) run(ctx context.Context, command string, timeout time.Duration) RealRun {
	r := RealRun{Client: rc.name, Command: command, Start: time.Now()}
	if ip, err := (&stubResolver{servers: rc.w.servers(), cache: map[string]cached{}}).lookup(ctx, rc.w.spec.ACME.Name); err == nil {
		r.Site = rc.w.spec.SiteAt(ip)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	line := rc.renew
	if command == "issue" {
		line = rc.issue
	}
	argv := acmecli.WithResolver(rc.resolv, line)
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Env = rc.env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	r.End = time.Now()
	r.OK = err == nil
	r.Account = rc.account()
	os.WriteFile(filepath.Join(rc.dir, fmt.Sprintf("%s-%s.log", command, r.Start.Format("150405.000"))), out, 0o600)
	if err != nil {
		r.Problem, r.Detail = realProblem(out, err, cctx.Err() != nil)
	}
	return r
}

// realProblem finds the ACME problem type and the line that explains it.
func realProblem(out []byte, err error, timedOut bool) (problem, detail string) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// The last problem is the one the client gave up on (lego v5 first
	// warns about an ARI lookup it does not need).
	for i := len(lines) - 1; i >= 0; i-- {
		if p := problemRE.FindString(lines[i]); p != "" {
			return p, firstLine(strings.TrimSpace(lines[i]))
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "Ask for help") && !strings.HasPrefix(l, "See the logfile") {
			detail = firstLine(l)
			break
		}
	}
	if timedOut {
		return "timeout", detail
	}
	return err.Error(), detail
}

// account is the account URL in the client's store, if it has one.
func (rc *realClient) account() string {
	pattern := filepath.Join(rc.dir, "accounts", "*", "*", "account.json") // lego: accounts/<server>/<email>/
	if rc.name == "certbot" {
		pattern = filepath.Join(rc.dir, "accounts", "*", "*", "*", "regr.json") // certbot: accounts/<host>/<path>/<id>/
	}
	matches, _ := filepath.Glob(pattern)
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var v struct {
			URI          string `json:"uri"`
			Registration struct {
				URI string `json:"uri"`
			} `json:"registration"`
		}
		if json.Unmarshal(bytes.TrimSpace(b), &v) == nil {
			if v.URI != "" {
				return v.URI
			}
			return v.Registration.URI
		}
	}
	return ""
}

// loop renews every `every` until ctx ends, recording each run.
func (rc *realClient) loop(ctx context.Context, every time.Duration, record func(RealRun)) {
	for ctx.Err() == nil {
		start := time.Now()
		r := rc.run(ctx, "renew", 60*time.Second)
		if ctx.Err() != nil && !r.OK {
			return // cut by the end of the drill: not counted
		}
		record(r)
		sleepCtx(ctx, time.Until(start.Add(every)))
	}
}
