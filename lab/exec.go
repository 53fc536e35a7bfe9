package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// Exec is argv as a client of the lab would run it: in a private mount
// namespace where /etc/resolv.conf names the cluster's primary DNS server
// (the ACME name resolves to the active site, as for any client of the
// cluster) and the trusted roots are the system's plus the lab root, with
// the environment DNS-01 needs (RFC2136_* for lego 4's rfc2136 provider,
// DNSUPDATE_* for lego 5's dnsupdate; CAIRN_LAB_DNS and CAIRN_LAB_TSIG_KEY
// for a certbot nsupdate hook). It needs root, like the lab.
func (l *Lab) Exec(argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("lab exec: give the command after --, e.g. cairn lab exec -- lego --server https://" + l.Spec.ACME.Name + "/directory …")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab exec: needs root (it gives the command a private /etc/resolv.conf with a mount namespace); run it with sudo")
	}
	primary := l.Spec.PrimaryDNS()
	if primary.Port() != 53 {
		return nil, fmt.Errorf("lab exec: the primary DNS server %s is not on port 53, which resolv.conf needs; use its address in dns.servers with port 53", primary)
	}
	dir := l.Spec.Path(filepath.Join("var", "lab-exec"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	resolv, bundle := filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "ca-certificates.crt")
	if err := fsutil.WriteFileAtomic(resolv, acmecli.ResolvConf(primary.Addr().String()), 0o644); err != nil {
		return nil, err
	}
	if err := l.writeRoots(bundle); err != nil {
		return nil, err
	}
	env, err := l.execEnv(primary, bundle)
	if err != nil {
		return nil, err
	}
	full := acmecli.WithResolverAndRoots(resolv, bundle, acmecli.SystemCAs, argv)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = append(os.Environ(), env...)
	return cmd, nil
}

// writeRoots writes the system's trusted roots and the lab root to path.
func (l *Lab) writeRoots(path string) error {
	if err := acmecli.WriteRoots(path, l.Spec.Path(filepath.Join(l.Spec.PKI.Dir, "public", "root.cert.pem"))); err != nil {
		return fmt.Errorf("lab exec: %w (run cairn lab up first)", err)
	}
	return nil
}

// execEnv is the environment of a lab client: the roots for clients that
// read their own variable, and the DNS-01 settings.
func (l *Lab) execEnv(primary netip.AddrPort, bundle string) ([]string, error) {
	keyFile := l.Spec.Path(l.Spec.DNS.TSIG.ClientKeyFile)
	key, err := rfc2136.ReadKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("lab exec: the clients' TSIG key: %w (run cairn lab up first)", err)
	}
	base := append(acmecli.RootsEnv(bundle), "CAIRN_LAB_DNS="+primary.Addr().String(), "CAIRN_LAB_TSIG_KEY="+keyFile)
	return acmecli.Lego5Env(base, bundle, primary.String(), l.Spec.ACME.Zone, key), nil
}
