package site

import (
	"os"
	"path/filepath"
	"time"

	"github.com/letsencrypt/boulder/cmd"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// ControllerAdminDir is where the failover controller's admin credentials
// for site live, relative to the spec: a certificate of the site's
// internal CA named admin.boulder (its own key, not the site's admin
// tool's), the CA, and an admin.json for Boulder's admin tool that reaches
// the site's RA and SA through its ACME front (passthrough by server
// name). Run the admin tool in this directory: the paths are relative.
func ControllerAdminDir(site string) string {
	return filepath.Join(cluster.DefaultSecretsDir, "admin", site)
}

// controllerAdmin makes (or keeps) the controller's credentials for this
// site next to the spec, outside the site's bundle: they go to the
// controller's host, never to the site's.
func (r *renderer) controllerAdmin(k *ipki) error {
	p := r.p
	dir := p.Spec.Path(ControllerAdminDir(p.Site.Name))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := k.leafAt(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "cairn-controller", []string{"admin.boulder"}, nil); err != nil {
		return err
	}
	ca, err := os.ReadFile(k.caFile())
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "ca.pem"), ca, 0o644); err != nil {
		return err
	}
	front := Addr(p.Public, p.Spec.ACME.HTTPSPort)
	b, err := adminJSON(cmd.TLSConfig{CACertFile: "ca.pem", CertFile: "cert.pem", KeyFile: "key.pem"},
		&cmd.GRPCClientConfig{ServerAddress: front, HostOverride: "ra.boulder", Timeout: dur(15 * time.Second)},
		&cmd.GRPCClientConfig{ServerAddress: front, HostOverride: "sa.boulder", Timeout: dur(15 * time.Second)})
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, "admin.json"), b, 0o600)
}
