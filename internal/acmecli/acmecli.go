// Package acmecli builds the command lines and environments of the real
// ACME clients cairn runs against a cluster (lego, certbot): DNS-01
// through RFC 2136 at the cluster's primary with the clients' TSIG key,
// or HTTP-01 / TLS-ALPN-01 with the client's own server on ports 80 / 443
// (on a lab client host); the cluster root trusted, and optionally the
// cluster DNS as the system resolver inside a private mount namespace.
package acmecli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// Lego is lego against one ACME server, with its state in Path.
type Lego struct {
	Server   string // directory URL
	Email    string
	Path     string
	Resolver string // host:port lego checks DNS-01 propagation at (the primary)
	Domain   string
	// Challenge: cluster.ChallengeHTTP01 (lego's own server on port 80),
	// cluster.ChallengeTLSALPN01 (on port 443); otherwise DNS-01.
	Challenge string
}

// challenge is the challenge flags: --http, --tls, or the DNS-01 provider
// dns with its own flags.
func (l Lego) challenge(dns ...string) []string {
	switch l.Challenge {
	case cluster.ChallengeHTTP01:
		return []string{"--http"}
	case cluster.ChallengeTLSALPN01:
		return []string{"--tls"}
	}
	return dns
}

// Args is the lego command line for command ("run", "renew", "revoke", …
// and their own flags).
func (l Lego) Args(command ...string) []string {
	a := []string{"lego", "--server", l.Server, "--accept-tos", "--email", l.Email, "--path", l.Path}
	a = append(a, l.challenge("--dns", "rfc2136", "--dns.resolvers", l.Resolver, "--dns.disable-cp")...)
	return append(append(a, "--domains", l.Domain), command...)
}

// CertFile is where lego (v4 and v5) keeps the certificate (the leaf
// first).
func (l Lego) CertFile() string { return filepath.Join(l.Path, "certificates", l.Domain+".crt") }

// Lego5 is lego v5 (tools/lego pins the newest the module proxy can build):
// one command, run, issues and renews; ARI is on by default. Program is
// its path; Profile, when set, the certificate profile it asks for.
type Lego5 struct {
	Lego
	Program string
	Profile string
}

// Args is the lego v5 run command line, with extra flags (e.g. renewal).
func (l Lego5) Args(extra ...string) []string {
	a := []string{l.Program, "run", "--server", l.Server, "--accept-tos", "--email", l.Email, "--path", l.Path}
	a = append(a, l.challenge("--dns", "dnsupdate", "--dns.resolvers", l.Resolver, "--dns.propagation.disable-ans")...)
	if l.Profile != "" {
		a = append(a, "--profile", l.Profile)
	}
	return append(append(a, "--domains", l.Domain), extra...)
}

// Lego5Env is LegoEnv with the names lego v5's dnsupdate provider reads.
func Lego5Env(base []string, rootFile, nameserver, zone string, key rfc2136.Key) []string {
	return append(LegoEnv(base, rootFile, nameserver, zone, key), "DNSUPDATE_NAMESERVER="+nameserver, "DNSUPDATE_ZONES="+zone,
		"DNSUPDATE_TSIG_KEY="+key.Name, "DNSUPDATE_TSIG_ALGORITHM="+key.Algorithm+".", "DNSUPDATE_TSIG_SECRET="+key.Secret,
		"DNSUPDATE_PROPAGATION_TIMEOUT=60", "DNSUPDATE_POLLING_INTERVAL=1", "DNSUPDATE_TTL=10")
}

// FindTool finds a client program: on PATH, else in the .tools/bin that
// `make deps` fills next to the running cairn (bin/cairn of a clone).
func FindTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "..", ".tools", "bin", name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return filepath.Clean(p), nil
		}
	}
	return "", fmt.Errorf("%s is not on PATH (`make deps` builds lego v5 into .tools/bin: put that directory on PATH)", name)
}

// LegoEnv is base plus what lego's rfc2136 provider and its trust need.
func LegoEnv(base []string, rootFile, nameserver, zone string, key rfc2136.Key) []string {
	return append(append([]string(nil), base...), "LEGO_CA_CERTIFICATES="+rootFile, "RFC2136_NAMESERVER="+nameserver,
		"RFC2136_ZONES="+zone, "RFC2136_TSIG_KEY="+key.Name, "RFC2136_TSIG_ALGORITHM="+key.Algorithm+".",
		"RFC2136_TSIG_SECRET="+key.Secret, "RFC2136_PROPAGATION_TIMEOUT=60", "RFC2136_POLLING_INTERVAL=1", "RFC2136_TTL=10")
}

// Certbot is certbot against one ACME server, with its state in Dir;
// its manual hooks write the DNS-01 record with nsupdate, or with
// Standalone its own server on port 80 answers HTTP-01.
type Certbot struct {
	Server     string // directory URL
	Dir        string // config, work and logs directory
	Domain     string
	DNSHost    string // the primary's address (port 53)
	KeyFile    string // the clients' TSIG key (tsig-keygen format)
	Standalone bool
}

func (c Certbot) hook(op string) string {
	return fmt.Sprintf(`printf "server %s\nupdate %s _acme-challenge.$CERTBOT_DOMAIN. 10 TXT \"$CERTBOT_VALIDATION\"\nsend\n" | nsupdate -k %s`, c.DNSHost, op, c.KeyFile)
}

func (c Certbot) dirs() []string {
	return []string{"--config-dir", c.Dir, "--work-dir", c.Dir, "--logs-dir", c.Dir, "--non-interactive"}
}

// Certonly registers (without an email) and issues.
func (c Certbot) Certonly() []string {
	a := append(append([]string{"certbot", "certonly"}, c.dirs()...), "--agree-tos", "--register-unsafely-without-email",
		"--server", c.Server)
	if c.Standalone {
		return append(a, "--standalone", "-d", c.Domain)
	}
	return append(a, "--manual", "--preferred-challenges", "dns", "-d", c.Domain,
		"--manual-auth-hook", c.hook("add"), "--manual-cleanup-hook", c.hook("delete"))
}

// CertFile is where certbot keeps the certificate it issued last.
func (c Certbot) CertFile() string { return filepath.Join(c.Dir, "live", c.Domain, "cert.pem") }

// Renew renews the certificate now, with the stored account and
// authenticator (hooks, or standalone).
func (c Certbot) Renew() []string {
	return append(append([]string{"certbot", "renew"}, c.dirs()...), "--cert-name", c.Domain, "--force-renewal", "--no-random-sleep-on-renew")
}

// Revoke revokes the certificate in certPath (keyCompromise) with the
// stored account, keeping its files.
func (c Certbot) Revoke(certPath string) []string {
	return append(append([]string{"certbot", "revoke"}, c.dirs()...), "--server", c.Server, "--cert-path", certPath,
		"--reason", "keycompromise", "--no-delete-after-revoke")
}

// CertbotEnv is base plus the cluster root for certbot's HTTPS.
func CertbotEnv(base []string, rootFile string) []string {
	return append(append([]string(nil), base...), "REQUESTS_CA_BUNDLE="+rootFile)
}

// WithResolver runs argv in a private mount namespace where resolvConf is
// bind-mounted on /etc/resolv.conf, so the client resolves the ACME name
// through the cluster DNS as any client of the cluster does (needs root).
func WithResolver(resolvConf string, argv []string) []string {
	script := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, resolvConf}, argv...)
}

// SystemCAs is Debian's bundle of trusted roots.
const SystemCAs = "/etc/ssl/certs/ca-certificates.crt"

// WriteRoots writes the system's trusted roots and the cluster root (PEM
// file rootFile) to path: the trust bundle of a client host's clients.
func WriteRoots(path, rootFile string) error {
	root, err := os.ReadFile(rootFile)
	if err != nil {
		return fmt.Errorf("the cluster root: %w", err)
	}
	sys, err := os.ReadFile(SystemCAs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(sys) > 0 && sys[len(sys)-1] != '\n' {
		sys = append(sys, '\n')
	}
	return fsutil.WriteFileAtomic(path, append(sys, root...), 0o644)
}

// RootsEnv names the trust bundle for the clients that read their own
// variable (Go's SSL_CERT_FILE, Python requests, curl).
func RootsEnv(bundle string) []string {
	return []string{"SSL_CERT_FILE=" + bundle, "REQUESTS_CA_BUNDLE=" + bundle, "CURL_CA_BUNDLE=" + bundle}
}

// WithResolverAndRoots is WithResolver that also bind-mounts the trust
// bundle roots on the system's (systemCAs), for clients that read only
// the system's roots.
func WithResolverAndRoots(resolvConf, roots, systemCAs string, argv []string) []string {
	script := `mount --bind "$0" /etc/resolv.conf && { [ ! -e "$2" ] || mount --bind "$1" "$2"; } && shift 2 && exec "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, resolvConf, roots, systemCAs}, argv...)
}

// ResolvConf is a resolv.conf naming one nameserver (port 53).
func ResolvConf(nameserver string) []byte {
	return []byte("nameserver " + nameserver + "\noptions timeout:2 attempts:2\n")
}
