package site

import (
	"context"
	"io"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/boulderbin"
)

// AllOptions say where one render puts the bundles and where they will
// live: the lab renders in place, provisioning for other hosts.
type AllOptions struct {
	Spec *cluster.Spec
	Log  io.Writer
	// Binaries are the Boulder programs to build or find besides ceremony
	// (which opening the PKI needs).
	Binaries []string
	// Self is the cairn executable (it signs with SoftHSM tokens: see
	// intermediates.Options.Signer).
	Self string
	// ClusterOut, ClusterRoot, PublicDir, SpecFile, BinDir: see
	// ClusterOptions.
	ClusterOut, ClusterRoot, PublicDir, SpecFile, BinDir string
	Prometheus, ClientHosts                              bool
	// SiteOut is where a site's bundle is written; SiteRoot and TokenDir:
	// see Options (empty: in place).
	SiteOut            func(site string) string
	SiteRoot, TokenDir string
}

// Rendered is what RenderAll made. Close releases the PKI.
type Rendered struct {
	Bins    map[string]string
	PKI     *intermediates.PKI
	Cluster *ClusterBundle
	Sites   []*Bundle
	Close   func()
}

// RenderAll is the one render step of the lab and of provisioning: build
// (or find) the pinned Boulder binaries, open and initialise the cluster
// PKI (root, intermediates, root CRL: idempotent), render the cluster
// bundle and every site's bundle.
func RenderAll(ctx context.Context, o AllOptions) (*Rendered, error) {
	bins, err := boulderbin.Ensure(ctx, o.Log, append([]string{"ceremony"}, o.Binaries...)...)
	if err != nil {
		return nil, err
	}
	pki, unlock, err := intermediates.Open(o.Spec, intermediates.Options{Ceremony: bins["ceremony"], Log: o.Log, Signer: o.Self})
	if err != nil {
		return nil, err
	}
	r := &Rendered{Bins: bins, PKI: pki, Close: unlock}
	if err := r.render(ctx, o); err != nil {
		unlock()
		return nil, err
	}
	return r, nil
}

func (r *Rendered) render(ctx context.Context, o AllOptions) error {
	if err := r.PKI.Init(ctx); err != nil {
		return err
	}
	schema, err := boulderbin.SourceDir(ctx)
	if err != nil {
		return err
	}
	if r.Cluster, err = RenderCluster(ClusterOptions{Spec: o.Spec, Out: o.ClusterOut, Root: o.ClusterRoot, PublicDir: o.PublicDir, SpecFile: o.SpecFile, BinDir: o.BinDir, Prometheus: o.Prometheus, ClientHosts: o.ClientHosts}); err != nil {
		return err
	}
	for i, s := range o.Spec.Sites {
		b, err := Render(ctx, Options{Spec: o.Spec, PKI: r.PKI, Index: i, Out: o.SiteOut(s.Name), Root: o.SiteRoot, TokenDir: o.TokenDir, SchemaDir: schema})
		if err != nil {
			return err
		}
		r.Sites = append(r.Sites, b)
	}
	return nil
}
