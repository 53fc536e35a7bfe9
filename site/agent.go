package site

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cairn-pki/cairn/agent"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// AgentProcess is the site agent's process in a bundle (package agent):
// it holds the site's admin credential for the RA and SA and offers the
// controller revoke, block-key and publish-crls on the management port.
const AgentProcess = "agent"

// ControllerAgentDir is where the failover controller's credential for
// site's agent lives, relative to the spec: a certificate of the site's
// internal CA naming agent.ControllerName (which no Boulder service
// accepts), its key, and the CA. It goes to the controller's host, never
// to the site's.
func ControllerAgentDir(site string) string {
	return filepath.Join(cluster.DefaultSecretsDir, "agent", site)
}

// AgentAddr is where the site named name's agent listens: its management
// address (the site's address) and agent.Port.
func AgentAddr(spec *cluster.Spec, name string) (string, error) {
	for i, s := range spec.Sites {
		if s.Name == name {
			p, err := NewPlan(spec, i)
			if err != nil {
				return "", err
			}
			return p.agentListen(), nil
		}
	}
	return "", fmt.Errorf("no site %q in the spec", name)
}

func (p *Plan) agentListen() string { return Addr(p.Public, agent.Port) }

// siteAgent writes the agent's certificate and config into the bundle and
// the controller's credential for it next to the spec, outside the bundle.
func (r *renderer) siteAgent(k *ipki) error {
	p := r.p
	if err := k.leaf("agent", []string{agent.ServerName}, nil); err != nil {
		return err
	}
	// Before the agent, the controller held an admin.boulder credential
	// for the RA and SA: it is no use any more and must not linger.
	if err := os.RemoveAll(p.Spec.Path(filepath.Join(cluster.DefaultSecretsDir, "admin", p.Site.Name))); err != nil {
		return err
	}
	dir := p.Spec.Path(ControllerAgentDir(p.Site.Name))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := k.leafAt(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "cairn-controller", []string{agent.ControllerName}, nil); err != nil {
		return err
	}
	ca, err := os.ReadFile(k.caFile())
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "ca.pem"), ca, 0o644); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(agent.Config{
		Site: p.Site.Name, Listen: p.agentListen(),
		CertFile: r.root("ipki", "agent", "cert.pem"), KeyFile: r.root("ipki", "agent", "key.pem"),
		ClientCAFile: r.root("ipki", "ca.pem"), ClientNames: []string{agent.ControllerName},
		SerialPrefix: int(p.Site.SerialPrefix.Value()),
		AdminConfig:  r.root("etc", "admin.json"), Bundle: r.o.Root,
		Backup: !p.Spec.Backup.Off,
	}, "", "  ")
	return r.write("etc/agent.json", append(b, '\n'), false)
}
