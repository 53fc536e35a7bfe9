package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// State is an upgrade's progress, written after every phase (atomically)
// so that an interrupted `cairn upgrade apply` resumes where it stopped.
type State struct {
	// To is the target Boulder release ("": each site keeps its own).
	To       string    `json:"to"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Abandoned: ended by `cairn upgrade abandon`.
	Abandoned bool     `json:"abandoned,omitempty"`
	Order     []string `json:"order"`
	// ActiveBefore: where the ACME name pointed when the upgrade started
	// (it goes back there at the end).
	ActiveBefore string                `json:"activeBefore,omitempty"`
	Sites        map[string]*SiteState `json:"sites"`
	// RotateInternal: every site's internal certificates are made again
	// (a resumed run keeps rotating the sites not done yet).
	RotateInternal bool `json:"rotateInternal,omitempty"`
}

// SiteState is one site's progress.
type SiteState struct {
	Phase          string `json:"phase"`
	FromBoulder    string `json:"fromBoulder,omitempty"`
	ToBoulder      string `json:"toBoulder,omitempty"`
	FromGeneration string `json:"fromGeneration,omitempty"`
	ToGeneration   string `json:"toGeneration,omitempty"`
	Backup         string `json:"backup,omitempty"`
	// WeDrained: the upgrade drained the site and must undrain it.
	WeDrained bool    `json:"weDrained,omitempty"`
	Error     string  `json:"error,omitempty"`
	Phases    []Event `json:"phases"`
}

var phaseOrder = []string{PhasePending, PhaseDraining, PhaseDrained, PhaseBackedUp, PhaseRendered, PhaseMigrated, PhaseRestarted, PhaseHealthy, PhaseCanary, PhaseDone}

// reached says whether the site finished phase p (or a later one) in
// this attempt.
func (s *SiteState) reached(p string) bool {
	i, j := slices.Index(phaseOrder, s.Phase), slices.Index(phaseOrder, p)
	if s.Phase == PhaseRollback { // interrupted while rolling back
		i = slices.Index(phaseOrder, PhaseRestarted)
	}
	return i >= 0 && j >= 0 && i >= j
}

// ReadState reads a recorded upgrade (nil, nil when there is none).
func ReadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w (remove it to start over)", path, err)
	}
	return &st, nil
}

func (st *State) write(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// loadState resumes the recorded upgrade if it is unfinished, else
// starts one: the sites in upgrade order (the active site last).
func (o *ApplyOptions) loadState(ctx context.Context) (*State, error) {
	st, err := ReadState(o.StateFile)
	if err != nil {
		return nil, err
	}
	if st != nil && st.Finished.IsZero() {
		if st.To != o.To {
			return nil, fmt.Errorf("an upgrade to Boulder %q is half done (%s): re-run with --to %s to finish it, or `cairn upgrade abandon` to roll its current site back", st.To, o.StateFile, orKeep(st.To))
		}
		fmt.Fprintf(o.Log, "resuming the upgrade started %s (%s)\n", st.Started.Format(time.RFC3339), o.StateFile)
		return st, nil
	}
	active := o.Active
	if active == "" && o.Controller != nil {
		if s, err := o.Controller.Status(ctx); err == nil {
			active = s.Active
		}
	}
	var plans []SitePlan
	for _, s := range o.Spec.Sites {
		if len(o.Sites) == 0 || slices.Contains(o.Sites, s.Name) {
			plans = append(plans, SitePlan{Site: s.Name})
		}
	}
	order(plans, o.Spec, active)
	st = &State{To: o.To, Started: time.Now(), Sites: map[string]*SiteState{}, ActiveBefore: active, RotateInternal: o.RotateInternal}
	for _, p := range plans {
		st.Order = append(st.Order, p.Site)
		st.Sites[p.Site] = &SiteState{Phase: PhasePending, Phases: []Event{}}
	}
	if err := os.MkdirAll(filepath.Dir(o.StateFile), 0o700); err != nil {
		return nil, err
	}
	return st, st.write(o.StateFile)
}

func orKeep(v string) string {
	if v == "" {
		return `""`
	}
	return v
}

// backup copies a bundle without its data (var/) into dir (0700).
func backup(bundle, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := copyBundle(bundle, tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// restore puts a backed-up bundle back: every file of the backup, and the
// rendered files the backup does not have removed.
func restore(backupDir, bundle string) error {
	now, err := site.RenderedFiles(bundle)
	if err != nil {
		return err
	}
	was, err := site.RenderedFiles(backupDir)
	if err != nil {
		return err
	}
	err = filepath.WalkDir(backupDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(backupDir, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		target := filepath.Join(bundle, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return fsutil.WriteFileAtomic(target, b, fi.Mode().Perm())
	})
	if err != nil {
		return err
	}
	for rel := range now {
		if _, ok := was[rel]; !ok {
			if err := os.Remove(filepath.Join(bundle, rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// StateFile is where a cluster's upgrade progress is recorded.
func StateFile(spec *cluster.Spec) string { return spec.Path("upgrade-state.json") }
