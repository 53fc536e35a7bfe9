package healthcheck

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // pure-Go SQLite driver
)

// History stores every probe result in SQLite (WAL), for the availability
// report. Results older than the retention are pruned.
type History struct {
	db        *sql.DB
	retention time.Duration
	// Record prunes at most once per pruneEvery of this clock, so every
	// long-running writer (the controller, probe --watch) keeps the file
	// bounded.
	now      func() time.Time
	mu       sync.Mutex
	prunedAt time.Time
}

const pruneEvery = time.Hour

// migrations are applied in order; schema_version records how far.
var migrations = []string{
	`CREATE TABLE results (
		id INTEGER PRIMARY KEY,
		site TEXT NOT NULL,
		kind TEXT NOT NULL,
		ok INTEGER NOT NULL,
		started_ms INTEGER NOT NULL,
		elapsed_ms REAL NOT NULL,
		failed_step TEXT NOT NULL DEFAULT '',
		error_class TEXT NOT NULL DEFAULT '',
		problem_type TEXT NOT NULL DEFAULT '',
		active_site TEXT NOT NULL DEFAULT '',
		steps TEXT NOT NULL
	);
	CREATE INDEX results_by_time ON results (started_ms);
	CREATE INDEX results_by_site_kind ON results (site, kind, started_ms);`,
	// The status page and the availability metrics read one kind over a
	// span (30 days of issuance samples among every kind's).
	`CREATE INDEX results_by_kind_time ON results (kind, started_ms);`,
}

// HistoryFile is where the controller and `probe --watch` keep the probe
// history, relative to the spec.
const HistoryFile = "var/probe-history.db"

// OpenHistory opens (creating and migrating) the database at path.
func OpenHistory(path string, retention time.Duration) (*History, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serialises anyway
	h := &History{db: db, retention: retention, now: time.Now}
	if err := h.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("probe history %s: %w", path, err)
	}
	return h, nil
}

// OpenHistoryReadOnly opens the database at path for reading only, as
// another user than its writer's may (nothing is created or migrated:
// a reader running as root leaves no file the controller cannot write).
func OpenHistoryReadOnly(path string) (*History, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return &History{db: db, now: time.Now}, nil
}

func (h *History) migrate() error {
	if _, err := h.db.Exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	var v int
	if err := h.db.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this cairn knows (%d): upgrade cairn", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := h.db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.Exec(`INSERT INTO schema_version (version) VALUES (?)`, i+1); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database.
func (h *History) Close() error { return h.db.Close() }

// Record stores one result, pruning first what is past the retention
// when the last prune is an hour old.
func (h *History) Record(ctx context.Context, r Result) error {
	now := h.now()
	h.mu.Lock()
	due := now.Sub(h.prunedAt) >= pruneEvery
	if due {
		h.prunedAt = now
	}
	h.mu.Unlock()
	if due {
		if _, err := h.Prune(ctx, now); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
	}
	steps, err := json.Marshal(r.Steps)
	if err != nil {
		return err
	}
	var failed, class, problem string
	if f := r.FailedStep(); f != nil {
		failed, class, problem = f.Name, f.ErrorClass, f.ACMEProblemType
	}
	ok := 0
	if r.OK {
		ok = 1
	}
	_, err = h.db.ExecContext(ctx, `INSERT INTO results (site, kind, ok, started_ms, elapsed_ms, failed_step, error_class, problem_type, active_site, steps)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.Site, r.Kind, ok, r.Started.UnixMilli(), float64(r.Elapsed.Microseconds())/1000,
		failed, class, problem, r.Facts["activeSite"], string(steps))
	return err
}

// Prune deletes results older than the retention.
func (h *History) Prune(ctx context.Context, now time.Time) (int64, error) {
	if h.retention <= 0 {
		return 0, nil
	}
	res, err := h.db.ExecContext(ctx, `DELETE FROM results WHERE started_ms < ?`, now.Add(-h.retention).UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Samples returns the results since from, oldest first.
func (h *History) Samples(ctx context.Context, from time.Time) ([]Sample, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT site, kind, ok, started_ms, failed_step, active_site FROM results WHERE started_ms >= ? ORDER BY started_ms`, from.UnixMilli())
	if err != nil {
		return nil, err
	}
	return scanSamples(rows)
}

// SamplesOf is Samples of the given kinds only.
func (h *History) SamplesOf(ctx context.Context, from time.Time, kinds ...string) ([]Sample, error) {
	if len(kinds) == 0 {
		return nil, nil
	}
	args := []any{from.UnixMilli()}
	for _, k := range kinds {
		args = append(args, k)
	}
	rows, err := h.db.QueryContext(ctx, `SELECT site, kind, ok, started_ms, failed_step, active_site FROM results
		WHERE started_ms >= ? AND kind IN (?`+strings.Repeat(", ?", len(kinds)-1)+`) ORDER BY started_ms`, args...)
	if err != nil {
		return nil, err
	}
	return scanSamples(rows)
}

// Results returns the results since from, oldest first, with their steps.
func (h *History) Results(ctx context.Context, from time.Time) ([]Result, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT site, kind, ok, started_ms, elapsed_ms, steps FROM results WHERE started_ms >= ? ORDER BY started_ms`, from.UnixMilli())
	if err != nil {
		return nil, err
	}
	return scanResults(rows)
}

// ResultsOf returns the results of one kind since from, oldest first.
func (h *History) ResultsOf(ctx context.Context, from time.Time, kind string) ([]Result, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT site, kind, ok, started_ms, elapsed_ms, steps FROM results WHERE kind = ? AND started_ms >= ? ORDER BY started_ms`, kind, from.UnixMilli())
	if err != nil {
		return nil, err
	}
	return scanResults(rows)
}

// Latest returns the last result of every site and kind, with its steps.
func (h *History) Latest(ctx context.Context) ([]Result, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT r.site, r.kind, r.ok, r.started_ms, r.elapsed_ms, r.steps FROM results r
		JOIN (SELECT site, kind, MAX(started_ms) m FROM results GROUP BY site, kind) l
		ON r.site = l.site AND r.kind = l.kind AND r.started_ms = l.m ORDER BY r.site, r.kind`)
	if err != nil {
		return nil, err
	}
	return scanResults(rows)
}

// scanResults reads rows of (site, kind, ok, started_ms, elapsed_ms, steps).
func scanResults(rows *sql.Rows) ([]Result, error) {
	defer rows.Close()
	var out []Result
	for rows.Next() {
		var r Result
		var ok int
		var ms int64
		var elapsed float64
		var steps string
		if err := rows.Scan(&r.Site, &r.Kind, &ok, &ms, &elapsed, &steps); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(steps), &r.Steps); err != nil {
			return nil, fmt.Errorf("result %s/%s at %d: steps: %w", r.Site, r.Kind, ms, err)
		}
		r.OK, r.Started, r.Elapsed = ok == 1, time.UnixMilli(ms), time.Duration(elapsed*float64(time.Millisecond))
		out = append(out, r)
	}
	return out, rows.Err()
}

// scanSamples reads rows of (site, kind, ok, started_ms, failed_step, active_site).
func scanSamples(rows *sql.Rows) ([]Sample, error) {
	defer rows.Close()
	var out []Sample
	for rows.Next() {
		var s Sample
		var ok int
		var ms int64
		if err := rows.Scan(&s.Site, &s.Kind, &ok, &ms, &s.FailedStep, &s.ActiveSite); err != nil {
			return nil, err
		}
		s.OK, s.At = ok == 1, time.UnixMilli(ms)
		out = append(out, s)
	}
	return out, rows.Err()
}

// Before returns, per site and kind, the last result before t, so a report
// knows each state at its start.
func (h *History) Before(ctx context.Context, t time.Time) ([]Sample, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT r.site, r.kind, r.ok, r.started_ms, r.failed_step, r.active_site FROM results r
		JOIN (SELECT site, kind, MAX(started_ms) m FROM results WHERE started_ms < ? GROUP BY site, kind) l
		ON r.site = l.site AND r.kind = l.kind AND r.started_ms = l.m`, t.UnixMilli())
	if err != nil {
		return nil, err
	}
	return scanSamples(rows)
}

// StepTimings returns every stored step duration (milliseconds) since from,
// keyed by site, kind and step, for passing steps only.
func (h *History) StepTimings(ctx context.Context, from time.Time) (map[[3]string][]float64, error) {
	rows, err := h.db.QueryContext(ctx, `SELECT site, kind, steps FROM results WHERE started_ms >= ?`, from.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[[3]string][]float64{}
	for rows.Next() {
		var site, kind, raw string
		if err := rows.Scan(&site, &kind, &raw); err != nil {
			return nil, err
		}
		var steps []struct {
			Name       string  `json:"name"`
			OK         bool    `json:"ok"`
			DurationMS float64 `json:"durationMs"`
		}
		if json.Unmarshal([]byte(raw), &steps) != nil {
			continue
		}
		for _, s := range steps {
			if s.OK {
				k := [3]string{site, kind, s.Name}
				out[k] = append(out[k], s.DurationMS)
			}
		}
	}
	return out, rows.Err()
}
