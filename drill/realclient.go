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
	"strconv"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/intermediates"
)

// RealClients are the ACME clients a scenario may run as users do.
var RealClients = []string{"certbot", "lego"}

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
	name, dir, resolv, domain string
	w                         *workload
	env                       []string
	rootFile, keyFile         string
}

// checkRealClients says what a scenario's real clients need that is missing.
func checkRealClients(names []string) error {
	for _, n := range append([]string{"unshare", "nsupdate"}, names...) {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("workload.clients: %s is not on PATH (install it, or remove the real clients from the scenario)", n)
		}
	}
	if len(names) > 0 && os.Geteuid() != 0 {
		return fmt.Errorf("workload.clients: real clients run in a private mount namespace, which needs root (or remove them from the scenario)")
	}
	return nil
}

func (w *workload) newRealClients(names []string, state string) ([]*realClient, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if err := checkRealClients(names); err != nil {
		return nil, err
	}
	pki, err := intermediates.OpenReadOnly(w.spec)
	if err != nil {
		return nil, err
	}
	primary, err := netip.ParseAddrPort(w.dnsUp.Server)
	if err != nil || primary.Port() != 53 {
		return nil, fmt.Errorf("workload.clients: the DNS primary %s must listen on port 53 for a resolv.conf", w.dnsUp.Server)
	}
	resolv := filepath.Join(state, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+primary.Addr().String()+"\noptions timeout:2 attempts:2\n"), 0o644); err != nil {
		return nil, err
	}
	var out []*realClient
	for _, n := range names {
		rc := &realClient{name: n, dir: filepath.Join(state, n), resolv: resolv, w: w,
			domain:   fmt.Sprintf("drill-%s-%d.%s", n, time.Now().Unix(), w.spec.ACME.Zone),
			rootFile: pki.RootCertFile(), keyFile: w.spec.Path(w.spec.DNS.TSIG.ClientKeyFile)}
		if err := os.MkdirAll(rc.dir, 0o700); err != nil {
			return nil, err
		}
		rc.env = append(os.Environ(), "LEGO_CA_CERTIFICATES="+rc.rootFile, "REQUESTS_CA_BUNDLE="+rc.rootFile)
		if n == "lego" {
			k := w.dnsUp.Key
			rc.env = append(rc.env, "RFC2136_NAMESERVER="+w.dnsUp.Server, "RFC2136_ZONES="+w.spec.ACME.Zone,
				"RFC2136_TSIG_KEY="+k.Name, "RFC2136_TSIG_ALGORITHM="+k.Algorithm+".", "RFC2136_TSIG_SECRET="+k.Secret,
				"RFC2136_PROPAGATION_TIMEOUT=60", "RFC2136_POLLING_INTERVAL=1", "RFC2136_TTL=10")
		}
		out = append(out, rc)
	}
	return out, nil
}

func (rc *realClient) directory() string {
	return "https://" + net.JoinHostPort(rc.w.spec.ACME.Name, strconv.Itoa(rc.w.spec.ACME.HTTPSPort)) + "/directory"
}

// argv is the command line for "issue" or "renew", as a user would type it.
func (rc *realClient) argv(command string) []string {
	if rc.name == "lego" {
		a := []string{"lego", "--server", rc.directory(), "--accept-tos", "--email", "drill@" + rc.w.spec.ACME.Zone,
			"--path", rc.dir, "--dns", "rfc2136", "--dns.resolvers", rc.w.dnsUp.Server, "--dns.disable-cp", "--domains", rc.domain}
		if command == "issue" {
			return append(a, "run")
		}
		return append(a, "renew", "--days", "10000", "--no-random-sleep")
	}
	host, _, _ := net.SplitHostPort(rc.w.dnsUp.Server)
	hook := func(op string) string {
		return fmt.Sprintf(`printf "server %s\nupdate %s _acme-challenge.$CERTBOT_DOMAIN. 10 TXT \"$CERTBOT_VALIDATION\"\nsend\n" | nsupdate -k %s`, host, op, rc.keyFile)
	}
	dirs := []string{"--config-dir", rc.dir, "--work-dir", rc.dir, "--logs-dir", rc.dir, "--non-interactive"}
	if command == "issue" {
		return append(append([]string{"certbot", "certonly"}, dirs...), "--agree-tos", "--register-unsafely-without-email",
			"--server", rc.directory(), "--manual", "--preferred-challenges", "dns", "-d", rc.domain,
			"--manual-auth-hook", hook("add"), "--manual-cleanup-hook", hook("delete"))
	}
	return append(append([]string{"certbot", "renew"}, dirs...), "--cert-name", rc.domain, "--force-renewal", "--no-random-sleep-on-renew")
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
	script := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
	argv := append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, rc.resolv}, rc.argv(command)...)
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
	for _, l := range lines {
		if p := problemRE.FindString(l); p != "" {
			return p, firstLine(strings.TrimSpace(l))
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
