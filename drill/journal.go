package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// JournalFile (under the spec directory) lists the faults a drill has
// injected and not yet restored. It is written before each injection, so
// a drill that is killed (SIGKILL, power loss) leaves a record that the
// next drill, or `cairn drill restore`, uses to undo what it did.
const JournalFile = "var/drill-journal.json"

type journal struct {
	PID     int            `json:"pid"`
	Started time.Time      `json:"started"`
	Faults  []journalEntry `json:"faults"`
	// EABKey is the ID of the drill's EAB key until it is revoked.
	EABKey string `json:"eabKey,omitempty"`
}

// journalEntry is enough to rebuild the fault and restore it.
type journalEntry struct {
	Step  Step   `json:"step"`
	Site  string `json:"site"`
	Table string `json:"table"`
}

func journalPath(spec *cluster.Spec) string { return spec.Path(JournalFile) }

func writeJournal(spec *cluster.Spec, j *journal) error {
	if len(j.Faults) == 0 && j.EABKey == "" {
		if err := os.Remove(journalPath(spec)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(journalPath(spec)), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(journalPath(spec), b, 0o644)
}

// drillRunning reports whether pid is a live drill other than this one.
func drillRunning(pid int) bool {
	if pid == os.Getpid() {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(b), "drill")
}

// restoreEach restores faults: those that cut the network first (the
// others need it to come back: a component restarted behind a partition
// cannot reach its database), each group newest first; then once more the
// ones that failed. It returns the errors of those still not restored, by
// index.
func restoreEach(ctx context.Context, faults []Fault) map[int]error {
	var order []int
	for _, network := range []bool{true, false} {
		for i := len(faults) - 1; i >= 0; i-- {
			if _, cuts := faults[i].(networkFault); cuts == network {
				order = append(order, i)
			}
		}
	}
	failed := map[int]error{}
	for _, i := range order {
		if err := faults[i].Restore(ctx); err != nil {
			failed[i] = err
		}
	}
	for _, i := range order {
		if failed[i] != nil {
			if err := faults[i].Restore(ctx); err == nil {
				delete(failed, i)
			} else {
				failed[i] = err
			}
		}
	}
	return failed
}

// RestoreLeftovers restores the faults a drill that did not finish left
// behind, newest first, revokes its EAB key, and returns what it restored. It refuses while
// that drill still runs (interrupting it restores its faults itself).
func RestoreLeftovers(ctx context.Context, in Infra) ([]string, error) {
	return restoreLeftovers(ctx, in, revokeLeftoverKey)
}

// restoreLeftovers is RestoreLeftovers through in, revoking a leftover
// EAB key with revoke.
func restoreLeftovers(ctx context.Context, in Infra, revoke func(ctx context.Context, spec *cluster.Spec, kid string) (string, error)) ([]string, error) {
	spec := in.ClusterSpec()
	b, err := os.ReadFile(journalPath(spec))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w (restore by hand with the runbook in docs/drill.md, then remove the file)", journalPath(spec), err)
	}
	if drillRunning(j.PID) {
		return nil, fmt.Errorf("the drill started at %s (PID %d) still runs: interrupt it with Ctrl-C (it restores its faults), or kill it and run `cairn drill restore`", j.Started.Format(time.RFC3339), j.PID)
	}
	var done []string
	var errs []error
	var left []journalEntry
	var faults []Fault
	for _, e := range j.Faults {
		f, err := newFault(in, e.Step, e.Site, e.Table)
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s at %s: %w", e.Step.Fault, e.Site, err))
			left = append(left, e)
			continue
		}
		faults = append(faults, f)
	}
	failed := restoreEach(ctx, faults)
	for i, f := range faults {
		if err := failed[i]; err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", f.Describe(), err))
			left = append(left, j.Faults[i])
			continue
		}
		done = append(done, f.Describe())
	}
	j.Faults = left
	if j.EABKey != "" {
		if d, err := revoke(ctx, spec, j.EABKey); err != nil {
			errs = append(errs, err)
		} else {
			done, j.EABKey = append(done, d), ""
		}
	}
	if err := writeJournal(spec, &j); err != nil {
		errs = append(errs, err)
	}
	return done, errors.Join(errs...)
}
