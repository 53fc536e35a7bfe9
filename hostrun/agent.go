package hostrun

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/cairn-pki/cairn/agent"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/revocation"
	"github.com/cairn-pki/cairn/site"
)

// AgentBackend is what the site agent does on the site's host: Boulder's
// admin tool with the bundle's own admin.json (the site's admin
// credential), and the bundle's crl-updater run once.
type AgentBackend struct {
	Bundle  *site.Bundle
	Admin   revocation.Admin
	Resolve func(string) (string, error)
}

// NewAgentBackend reads the bundle of c and finds the binaries of its
// release (ReleaseResolver); nothing is built on a site's host.
func NewAgentBackend(c *agent.Config) (*AgentBackend, error) {
	b, err := siteBundle(c.Bundle)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	resolve := ReleaseResolver(b.BoulderVersion)
	admin, err := resolve("admin")
	if err != nil {
		return nil, err
	}
	return &AgentBackend{Bundle: b, Resolve: resolve,
		Admin: revocation.Admin{Binary: admin, Config: func(string) string { return c.AdminConfig }}}, nil
}

// ReleaseResolver finds a Boulder program of release version without
// building it: next to the running cairn (provisioned hosts install them
// together), in that release's directory, in the pinned release's (the
// lab's cache), on PATH.
func ReleaseResolver(version string) func(string) (string, error) {
	return func(name string) (string, error) {
		var dirs []string
		if self, err := os.Executable(); err == nil {
			dirs = append(dirs, filepath.Dir(self))
		}
		for _, v := range slices.Compact([]string{version, boulderbin.Version}) {
			if d, err := boulderbin.DirFor(v); err == nil && v != "" {
				dirs = append(dirs, d)
			}
		}
		for _, d := range dirs {
			if p := filepath.Join(d, name); isExecutable(p) {
				return p, nil
			}
		}
		return LookProgram(name)
	}
}

// Revoke implements agent.Backend (revocation's errors are the agent's).
func (a *AgentBackend) Revoke(ctx context.Context, serial, reason string) error {
	return a.Admin.Revoke(ctx, a.Bundle.Site, serial, reason)
}

// BlockKey implements agent.Backend.
func (a *AgentBackend) BlockKey(ctx context.Context, spkiHash, comment string) error {
	return a.Admin.BlockKey(ctx, a.Bundle.Site, spkiHash, comment)
}

// Backup implements agent.Backend.
func (a *AgentBackend) Backup(ctx context.Context, w io.Writer) error {
	return BackupDB(ctx, a.Bundle.Database, w)
}

// PublishCRLs implements agent.Backend.
func (a *AgentBackend) PublishCRLs(ctx context.Context) error {
	return UpdateCRLs(ctx, a.Bundle, a.Resolve)
}
