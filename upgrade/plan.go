// Package upgrade rolls a new Boulder release or a changed cairn.yaml
// through the sites one at a time (docs/upgrades.md). Its first part
// plans: it renders what each site would run into a copy of the site's
// bundle and reports, site by site in the order an upgrade takes them,
// what would change — changing nothing.
package upgrade

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/site"
)

// SitePlan is what upgrading one site changes.
type SitePlan struct {
	Site   string `json:"site"`
	Step   int    `json:"step"` // 1: first
	Active bool   `json:"active"`
	// From and To: the Boulder version and bundle generation now and after.
	FromBoulder    string `json:"fromBoulder"`
	ToBoulder      string `json:"toBoulder"`
	FromGeneration string `json:"fromGeneration"`
	ToGeneration   string `json:"toGeneration"`
	// Changed: the bundle's non-secret files that differ (added, removed
	// or changed), and Restart the processes whose command or
	// environment differs.
	Changed []string `json:"changed"`
	Restart []string `json:"restart"`
	Diff    string   `json:"diff,omitempty"`
}

// Unchanged reports whether the site would run exactly what it runs.
func (p SitePlan) Unchanged() bool {
	return p.FromGeneration == p.ToGeneration && len(p.Changed) == 0 && len(p.Restart) == 0
}

// Options say where each site's bundle is and where it runs.
type Options struct {
	Spec *cluster.Spec
	// Bundle is the directory of the site's current rendered bundle; Root
	// is where that bundle runs (the lab: the same directory).
	Bundle, Root func(site string) string
	Lab          bool
	// Active is the site the ACME name points to ("" if unknown: the
	// best-priority site is taken as active).
	Active string
	// Self is the cairn executable (SoftHSM signing); Log takes progress.
	Self string
	Log  io.Writer
	// To is the Boulder release to plan for ("": each site keeps its own).
	To string
	// TokenDir is where the sites' SoftHSM tokens are on their hosts
	// ("": the cluster PKI's own, the lab).
	TokenDir string
	// RotateInternal makes every site's internal certificates again (new
	// keys) under its internal CA: `--rotate-internal`.
	RotateInternal bool
}

// Plan renders every site into a copy of its bundle and compares.
func Plan(ctx context.Context, o Options) ([]SitePlan, error) {
	r, err := openRender(ctx, o)
	if err != nil {
		return nil, err
	}
	defer r.close()
	var plans []SitePlan
	for _, s := range o.Spec.Sites {
		p, err := r.plan(ctx, s.Name)
		if err != nil {
			return nil, fmt.Errorf("site %s: %w", s.Name, err)
		}
		plans = append(plans, p)
	}
	order(plans, o.Spec, o.Active)
	return plans, nil
}

// render renders sites as o says: the cluster PKI open, Boulder's schema
// found.
type render struct {
	o      Options
	pki    site.PKISource
	unlock func()
	schema string
}

func openRender(ctx context.Context, o Options) (*render, error) {
	if o.To != "" {
		// Before anything else: cairn's policy addition must still apply
		// to the target release (docs/policy.md).
		if err := boulderbin.CheckAddition(ctx, o.To); err != nil {
			return nil, fmt.Errorf("--to %s: %w", o.To, err)
		}
	}
	bins, err := boulderbin.Ensure(ctx, o.Log, "ceremony")
	if err != nil {
		return nil, err
	}
	schema, err := boulderbin.SourceDir(ctx)
	if err != nil {
		return nil, err
	}
	pki, unlock, err := intermediates.Open(o.Spec, intermediates.Options{Ceremony: bins["ceremony"], Log: o.Log, Signer: o.Self})
	if err != nil {
		return nil, err
	}
	return &render{o: o, pki: pki, unlock: unlock, schema: schema}, nil
}

func (r *render) close() { r.unlock() }

// site renders site name into out, on the release o.To ("": its own).
func (r *render) site(ctx context.Context, name, out string) (*site.Bundle, error) {
	i := slices.IndexFunc(r.o.Spec.Sites, func(s cluster.Site) bool { return s.Name == name })
	return site.Render(ctx, site.Options{Spec: r.o.Spec, PKI: r.pki, Index: i, Out: out, Root: r.o.Root(name),
		TokenDir: r.o.TokenDir, SchemaDir: r.schema, Lab: r.o.Lab, BoulderVersion: r.o.To, RotateInternal: r.o.RotateInternal})
}

// plan renders site name into a copy of its bundle (its keys and
// certificates kept, its data left out) and compares the two.
func (r *render) plan(ctx context.Context, name string) (SitePlan, error) {
	o := r.o
	cur := o.Bundle(name)
	old, err := site.ReadBundle(cur)
	if err != nil {
		return SitePlan{}, fmt.Errorf("no rendered bundle to compare with (%w): render it first (cairn lab up)", err)
	}
	tmp, err := os.MkdirTemp("", "cairn-upgrade-"+name+"-*")
	if err != nil {
		return SitePlan{}, err
	}
	defer os.RemoveAll(tmp)
	if err := copyBundle(cur, tmp); err != nil {
		return SitePlan{}, err
	}
	nb, err := r.site(ctx, name, tmp)
	if err != nil {
		return SitePlan{}, err
	}
	p := SitePlan{Site: name, FromBoulder: old.BoulderVersion, ToBoulder: nb.BoulderVersion, FromGeneration: old.Generation, ToGeneration: nb.Generation}
	if p.Changed, err = changedFiles(cur, tmp); err != nil {
		return SitePlan{}, err
	}
	p.Restart = restarts(old, nb, p.Changed)
	p.Diff = diff(cur, tmp, p.Changed)
	return p, nil
}

// copyBundle copies a bundle without its data (var/).
func copyBundle(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == "var" {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, fi.Mode().Perm()|0o700)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, fi.Mode().Perm())
		}
		return nil // sockets, links: not part of what is rendered
	})
}

// changedFiles lists the rendered files (site.RenderedFiles) that differ
// between two bundles.
func changedFiles(a, b string) ([]string, error) {
	fa, err := site.RenderedFiles(a)
	if err != nil {
		return nil, err
	}
	fb, err := site.RenderedFiles(b)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for rel, x := range fa {
		if y, ok := fb[rel]; !ok || !bytes.Equal(x, y) {
			out = append(out, rel)
		}
	}
	for rel := range fb {
		if _, ok := fa[rel]; !ok {
			out = append(out, rel)
		}
	}
	sort.Strings(out)
	return out, nil
}

// restarts are the processes whose program, arguments or environment
// differ, that read a changed file (named in their arguments: every
// component reads its config only at start), that run Boulder when the
// release changes, or that appear or go. A changed internal certificate
// (ipki/: renewed or rotated) restarts everything but the database, whose
// TLS comes from the cluster's database CA: every other component speaks
// the site's internal mTLS.
func restarts(a, b *site.Bundle, changed []string) []string {
	key := func(p site.Process) string {
		return p.Program + "\x00" + strings.Join(p.Args, "\x00") + "\x00" + strings.Join(p.Env, "\x00") + "\x00" + strings.Join(p.UnsetEnv, "\x00")
	}
	was := map[string]string{}
	for _, p := range a.Processes {
		was[p.Name] = key(p)
	}
	out := []string{}
	reads := func(p site.Process) bool {
		for _, arg := range p.Args {
			for _, rel := range changed {
				if strings.HasSuffix(arg, "/"+rel) || strings.HasSuffix(arg, "="+rel) {
					return true
				}
			}
		}
		return false
	}
	release := a.BoulderVersion != b.BoulderVersion
	internal := slices.ContainsFunc(changed, func(rel string) bool { return strings.HasPrefix(rel, "ipki/") })
	for _, p := range b.Processes {
		if k, ok := was[p.Name]; !ok || k != key(p) || reads(p) || (release && p.Program == "boulder") || (internal && p.Program != "mariadbd") {
			out = append(out, p.Name)
		}
		delete(was, p.Name)
	}
	for name := range was {
		out = append(out, name+" (removed)")
	}
	return out
}

// diff is `diff -u` of the changed text files (at most 200 lines).
func diff(a, b string, changed []string) string {
	var buf bytes.Buffer
	for _, rel := range changed {
		if !strings.HasPrefix(rel, "etc/") {
			continue // certificates and schema: named, not shown
		}
		out, _ := exec.Command("diff", "-u", "--label", "now/"+rel, "--label", "planned/"+rel, nullIfMissing(filepath.Join(a, rel)), nullIfMissing(filepath.Join(b, rel))).Output()
		buf.Write(out)
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	if len(lines) > 200 {
		return strings.Join(lines[:200], "") + fmt.Sprintf("… %d more lines\n", len(lines)-200)
	}
	return buf.String()
}

func nullIfMissing(path string) string {
	if _, err := os.Stat(path); err != nil {
		return "/dev/null"
	}
	return path
}

// order numbers the sites as an upgrade takes them: the sites not serving
// the ACME name first, least preferred (highest priority number) first, so
// the most preferred standby is upgraded last before the active site; the
// active site last (it is drained first).
func order(plans []SitePlan, spec *cluster.Spec, active string) {
	prio := map[string]int{}
	best := ""
	for _, s := range spec.Sites {
		prio[s.Name] = s.Priority
		if best == "" || s.Priority < prio[best] {
			best = s.Name
		}
	}
	if active == "" {
		active = best
	}
	for i := range plans {
		plans[i].Active = plans[i].Site == active
	}
	sort.SliceStable(plans, func(i, j int) bool {
		a, b := plans[i], plans[j]
		if a.Active != b.Active {
			return !a.Active
		}
		return prio[a.Site] > prio[b.Site]
	})
	for i := range plans {
		plans[i].Step = i + 1
	}
}
