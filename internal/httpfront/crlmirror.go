package httpfront

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// CRLMirror keeps, at one site's CRL front, a copy of every other site's
// signed CRLs, so a site's CRLs still download from the fronts that are
// up while it is down (every crl.<site> name lists every front). Copies
// are checked (the issuer's signature, the shard's distribution point)
// and never replace a CRL with a higher number.
type CRLMirror struct {
	Dir     string  `json:"dir"`     // where copies live: Dir/<bucket>/<nameID>/<shard>.crl
	Bucket  string  `json:"bucket"`  // the path's first element
	Peers   []Peer  `json:"peers"`   // the other sites' fronts
	Issuers string  `json:"issuers"` // directory of <nameID>.der: every site's issuers
	Own     []int64 `json:"own"`     // this site's issuer NameIDs (served from its own store)
	Shards  int     `json:"shards"`
	Every   string  `json:"every"` // e.g. 30s

	// The other sites' issuers, read once (a rotation re-renders and
	// restarts the front).
	once    sync.Once
	issuers map[int64]*x509.Certificate
	loadErr error

	// lastFetch: when a request last fetched a shard from its owner
	// (within fetchEvery, requests get the copy: strangers cannot turn
	// requests into fetches).
	mu        sync.Mutex
	lastFetch map[string]time.Time
}

// fetchEvery is how often requests for one foreign shard may fetch it from
// its owner; in between they get the copy (which the fetch refreshed, and
// the mirror loop refreshes every Every).
const fetchEvery = 10 * time.Second

// mayFetch reports whether a request for rel may fetch it now, and if so
// notes it.
func (m *CRLMirror) mayFetch(rel string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastFetch == nil {
		m.lastFetch = map[string]time.Time{}
	}
	if now.Sub(m.lastFetch[rel]) < fetchEvery {
		return false
	}
	m.lastFetch[rel] = now
	return true
}

// Peer is another site's CRL front and the issuers it publishes.
type Peer struct {
	URL     string  `json:"url"` // http://IP:port
	NameIDs []int64 `json:"nameIDs"`
}

// owner is the front of the site whose issuer nameID is.
func (m *CRLMirror) owner(nameID int64) string {
	for _, p := range m.Peers {
		for _, n := range p.NameIDs {
			if n == nameID {
				return p.URL
			}
		}
	}
	return ""
}

// own reports whether nameID is one of this site's issuers.
func (m *CRLMirror) own(nameID int64) bool {
	for _, n := range m.Own {
		if n == nameID {
			return true
		}
	}
	return false
}

// foreign is every issuer in the issuers directory that is not ours.
func (m *CRLMirror) foreign() (map[int64]*x509.Certificate, error) {
	all, err := m.allIssuers()
	if err != nil {
		return nil, err
	}
	out := map[int64]*x509.Certificate{}
	for id, c := range all {
		if !m.own(id) {
			out[id] = c
		}
	}
	return out, nil
}

// allIssuers is every issuer in the issuers directory, ours too.
func (m *CRLMirror) allIssuers() (map[int64]*x509.Certificate, error) {
	m.once.Do(func() { m.issuers, m.loadErr = m.readIssuers() })
	return m.issuers, m.loadErr
}

func (m *CRLMirror) readIssuers() (map[int64]*x509.Certificate, error) {
	entries, err := os.ReadDir(m.Issuers)
	if err != nil {
		return nil, err
	}
	out := map[int64]*x509.Certificate{}
	for _, e := range entries {
		id, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ".der"), 10, 64)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.Issuers, e.Name()))
		if err != nil {
			return nil, err
		}
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: %w", e.Name(), err)
		}
		out[id] = c
	}
	return out, nil
}

// Run copies every foreign shard from every peer every period until ctx ends.
func (m *CRLMirror) Run(ctx context.Context, log *slog.Logger) {
	every, err := time.ParseDuration(m.Every)
	if err != nil || every <= 0 {
		every = 30 * time.Second
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		if n, err := m.Once(ctx, hc); err != nil {
			log.Warn("crl mirror", "copied", n, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// Once copies what is newer at the peers and returns how many shards it
// wrote; an unreachable peer is skipped (another has the same copies).
func (m *CRLMirror) Once(ctx context.Context, hc *http.Client) (int, error) {
	issuers, err := m.foreign()
	if err != nil {
		return 0, err
	}
	wrote := 0
	var lastErr error
	for id, issuer := range issuers {
		for shard := 1; shard <= m.Shards; shard++ {
			rel := fmt.Sprintf("%s/%d/%d.crl", m.Bucket, id, shard)
			for _, peer := range m.Peers {
				ok, err := m.copyFrom(ctx, hc, peer.URL, rel, issuer)
				if err != nil {
					lastErr = err
				}
				if ok {
					wrote++
				}
			}
		}
	}
	return wrote, lastErr
}

// copyFrom fetches rel from peer and keeps it if it is a valid CRL of
// issuer newer than the copy here.
func (m *CRLMirror) copyFrom(ctx context.Context, hc *http.Client, peer, rel string, issuer *x509.Certificate) (bool, error) {
	wrote, _, err := m.fetch(ctx, hc, peer, rel, issuer)
	return wrote, err
}

// fetch gets rel from peer, checks it, keeps it when it is newer than the
// copy here, and returns it (nil when the peer had none).
func (m *CRLMirror) fetch(ctx context.Context, hc *http.Client, peer, rel string, issuer *x509.Certificate) (bool, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peer+"/"+rel, nil)
	if err != nil {
		return false, nil, err
	}
	req.Header.Set(copyOnlyHeader, "1")
	resp, err := hc.Do(req)
	if err != nil {
		return false, nil, nil // the peer is down: another one has it
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, nil, nil
	}
	der, err := io.ReadAll(io.LimitReader(resp.Body, 10<<20))
	if err != nil {
		return false, nil, nil
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return false, nil, fmt.Errorf("%s/%s: %w", peer, rel, err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return false, nil, fmt.Errorf("%s/%s: not signed by its issuer: %w", peer, rel, err)
	}
	if !namesShard(crl, rel) {
		return false, nil, fmt.Errorf("%s/%s: its issuing distribution point is another shard's", peer, rel)
	}
	dst := filepath.Join(m.Dir, filepath.FromSlash(rel))
	if old, err := os.ReadFile(dst); err == nil {
		if cur, err := x509.ParseRevocationList(old); err == nil {
			switch cur.Number.Cmp(crl.Number) {
			case 0:
				return false, der, nil
			case 1:
				return false, nil, nil // ours is newer: never roll back (serve ours)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return false, nil, err
	}
	return true, der, fsutil.WriteFileAtomic(dst, der, 0o644)
}

// copyOnlyHeader marks a front's request to another front: answer with
// what you hold, do not ask anyone else (no request between two fronts
// ever causes another).
const copyOnlyHeader = "Cairn-CRL-Copy-Only"

// handler serves /<bucket>/<nameID>/<shard>.crl: this site's issuers from
// its own store (own), every other issuer from the mirror.
// A foreign one is fetched from its owner's front first (and the copy
// refreshed), at most once per fetchEvery per shard; otherwise, and when
// the owner does not answer, the copy is served. One of this site's own
// that its store does not hold (a site rebuilt on a new disk, before it
// published again) is fetched from the peers' copies the same way.
func (m *CRLMirror) handler(own http.Handler) http.Handler {
	files := http.FileServer(http.Dir(m.Dir))
	hc := &http.Client{Timeout: 2 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
		id, err := strconv.ParseInt(parts[min(1, len(parts)-1)], 10, 64)
		copyOnly := r.Header.Get(copyOnlyHeader) != ""
		if len(parts) != 3 || err != nil || m.own(id) && copyOnly {
			own.ServeHTTP(w, r)
			return
		}
		rel := strings.Join(parts, "/")
		if m.own(id) {
			rec := &recorder{header: http.Header{}}
			own.ServeHTTP(rec, r)
			if rec.status == http.StatusOK || rec.status == 0 {
				rec.replay(w)
				return
			}
			if !m.fromPeers(r, hc, rel, id) && !fsutil.Exists(filepath.Join(m.Dir, filepath.FromSlash(rel))) {
				rec.replay(w)
				return
			}
			w.Header().Set("Content-Type", "application/pkix-crl")
			files.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		if owner := m.owner(id); owner != "" && !copyOnly && m.mayFetch(rel, time.Now()) {
			if issuers, err := m.foreign(); err == nil && issuers[id] != nil {
				if _, der, err := m.fetch(r.Context(), hc, owner, rel, issuers[id]); err == nil && der != nil {
					w.Write(der)
					return
				}
			}
		}
		files.ServeHTTP(w, r)
	})
}

// fromPeers copies this site's own shard rel from the first peer whose
// copy checks, at most once per fetchEvery; it reports whether it did.
func (m *CRLMirror) fromPeers(r *http.Request, hc *http.Client, rel string, id int64) bool {
	all, err := m.allIssuers()
	if err != nil || all[id] == nil || !m.mayFetch(rel, time.Now()) {
		return false
	}
	for _, p := range m.Peers {
		if _, der, err := m.fetch(r.Context(), hc, p.URL, rel, all[id]); err == nil && der != nil {
			return true
		}
	}
	return false
}

// recorder keeps the own store's answer (a CRL: small) to replay it or
// fall back.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *recorder) Header() http.Header { return c.header }
func (c *recorder) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
}
func (c *recorder) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if c.body.Len()+len(b) > 64<<20 {
		return 0, errors.New("answer too large")
	}
	return c.body.Write(b)
}

func (c *recorder) replay(w http.ResponseWriter) {
	for k, v := range c.header {
		w.Header()[k] = v
	}
	w.WriteHeader(max(c.status, http.StatusOK))
	w.Write(c.body.Bytes())
}

// idpOID is the issuing distribution point extension (RFC 5280 §5.2.5).
var idpOID = asn1.ObjectIdentifier{2, 5, 29, 28}

// namesShard reports whether the CRL's issuing distribution point names
// the shard at rel (Boulder writes the shard's URL there).
func namesShard(crl *x509.RevocationList, rel string) bool {
	for _, e := range crl.Extensions {
		if e.Id.Equal(idpOID) {
			return bytes.HasSuffix(bytes.TrimRight(e.Value, "\x00"), []byte(rel)) || bytes.Contains(e.Value, []byte("/"+rel))
		}
	}
	return false
}
