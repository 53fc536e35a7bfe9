// Package backup keeps the off-site copy of every site that a lost site
// is rebuilt from (docs/backup.md): consistent backups of each site's
// database, taken through the site's agent, and the newest CRL of every
// shard each site published. The leading controller fills the store on
// its host (Scheduler); `cairn site rebuild` restores from it and
// reconciles the restored database with what happened after the backup
// (Revocations: every serial the site's CRLs listed).
//
// Layout under Store.Dir, every file 0600 and written whole (temporary
// file, then rename):
//
//	<site>/<UTC stamp>.xb.gz    a database backup (hostrun.BackupDB's format)
//	<site>/<UTC stamp>.json     its manifest (Manifest)
//	<site>/crls/<issuer>-<shard>.crl   the newest CRL of that shard (DER)
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// ErrNoBackup: the store holds no backup of the site.
var ErrNoBackup = errors.New("no backup of this site")

// Store is the off-site copies under Dir.
type Store struct{ Dir string }

// Manifest describes one backup.
type Manifest struct {
	Site    string    `json:"site"`
	File    string    `json:"file"` // base name, next to the manifest
	Taken   time.Time `json:"taken"`
	Bytes   int64     `json:"bytes"`
	SHA256  string    `json:"sha256"`
	Seconds float64   `json:"seconds"` // how long taking it took
}

// StampFormat names a backup's files (<stamp>.xb.gz, <stamp>.json).
const StampFormat = "20060102T150405.000Z"

func (s Store) siteDir(site string) string { return filepath.Join(s.Dir, site) }

// Path is where m's backup file is.
func (s Store) Path(m Manifest) string { return filepath.Join(s.siteDir(m.Site), m.File) }

// manifestPath is where m itself is, next to its backup.
func (s Store) manifestPath(m Manifest) string {
	return filepath.Join(s.siteDir(m.Site), strings.TrimSuffix(m.File, ".xb.gz")+".json")
}

// Take writes a new backup of site with fetch (which writes the backup's
// bytes) and returns its manifest. Nothing is left behind when fetch
// fails: the file appears, whole and with its manifest, or not at all.
func (s Store) Take(ctx context.Context, site string, fetch func(context.Context, io.Writer) error) (Manifest, error) {
	dir := s.siteDir(site)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Manifest{}, err
	}
	start := time.Now().UTC()
	m := Manifest{Site: site, Taken: start, File: start.Format(StampFormat) + ".xb.gz"}
	tmp, err := os.CreateTemp(dir, ".taking-*")
	if err != nil {
		return m, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	err = fetch(ctx, cw)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return m, err
	}
	if cw.n == 0 {
		return m, errors.New("the backup is empty")
	}
	m.Bytes, m.SHA256, m.Seconds = cw.n, hex.EncodeToString(h.Sum(nil)), time.Since(start).Seconds()
	// A link, not a rename: it never replaces a backup taken in the same
	// millisecond (another controller, cairn backup now).
	for i := 2; ; i++ {
		err := os.Link(tmp.Name(), s.Path(m))
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || i > 100 {
			return m, err
		}
		m.File = fmt.Sprintf("%s-%d.xb.gz", start.Format(StampFormat), i)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := fsutil.WriteFileAtomic(s.manifestPath(m), append(b, '\n'), 0o600); err != nil {
		os.Remove(s.Path(m))
		return m, err
	}
	return m, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// List returns site's backups, newest first.
func (s Store) List(site string) ([]Manifest, error) {
	files, err := filepath.Glob(filepath.Join(s.siteDir(site), "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Manifest
	for _, f := range files {
		var m Manifest
		if err := fsutil.ReadJSON(f, &m); err != nil {
			return nil, err
		}
		if m.Site != site || m.File != filepath.Base(strings.TrimSuffix(f, ".json"))+".xb.gz" {
			return nil, fmt.Errorf("%s: names another site or file: not written by cairn", f)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int { return b.Taken.Compare(a.Taken) })
	return out, nil
}

// Latest is site's newest backup whose file is there and whole (its
// size and SHA-256 match the manifest).
func (s Store) Latest(site string) (Manifest, error) {
	all, err := s.List(site)
	if err != nil {
		return Manifest{}, err
	}
	var errs []error
	for _, m := range all {
		if err := s.Verify(m); err != nil {
			errs = append(errs, err)
			continue
		}
		return m, nil
	}
	if len(errs) > 0 {
		return Manifest{}, fmt.Errorf("site %s: %w: every backup is damaged: %w", site, ErrNoBackup, errors.Join(errs...))
	}
	return Manifest{}, fmt.Errorf("site %s: %w in %s", site, ErrNoBackup, s.Dir)
}

// Verify checks that m's file has the size and SHA-256 its manifest says.
func (s Store) Verify(m Manifest) error {
	f, err := os.Open(s.Path(m))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if n != m.Bytes || hex.EncodeToString(h.Sum(nil)) != m.SHA256 {
		return fmt.Errorf("%s: %d bytes, SHA-256 %.12s…; the manifest says %d bytes, %.12s…", m.File, n, hex.EncodeToString(h.Sum(nil)), m.Bytes, m.SHA256)
	}
	return nil
}

// Prune removes site's backups beyond the keep newest; it returns how
// many it removed.
func (s Store) Prune(site string, keep int) (int, error) {
	all, err := s.List(site)
	if err != nil || len(all) <= keep {
		return 0, err
	}
	n := 0
	for _, m := range all[keep:] {
		if err := os.Remove(s.manifestPath(m)); err != nil {
			return n, err
		}
		if err := os.Remove(s.Path(m)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}
