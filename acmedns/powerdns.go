package acmedns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// PowerDNS writes the name through the PowerDNS Authoritative HTTP API
// (PATCH of the zone's RRsets, atomic in one backend transaction).
//
// The API has no conditional writes (no prerequisites, no ETag), so
// compare-and-swap is done by a Fence (etcd): every write first swaps the
// fence from the state it read to the state it will write, in one etcd
// transaction, and only the writer that won the swap writes the API. A
// writer whose read is stale loses the swap and gets ErrConflict: exactly
// one of several racing writers wins, as with RFC 2136 prerequisites. The
// fence also holds the whole state, so a writer that won the swap and
// died before its PATCH is completed by the next Read (roll forward).
// What the fence cannot give: a writer delayed between its swap and its
// PATCH longer than a later writer's whole move could land its PATCH
// last; the next Read puts the fence's newer state back.
type PowerDNS struct {
	Servers
	API      string // base URL, e.g. http://127.0.30.2:8081
	ServerID string // "localhost"
	APIKey   string
	// Fence makes writes compare-and-swap; nil makes the provider
	// read-only (Move and SetTTL fail).
	Fence Fence
	HTTP  *http.Client
}

func (p *PowerDNS) String() string { return "PowerDNS API at " + p.API }

// fenceState is what the fence holds: the state last written.
type fenceState struct {
	Addrs []string `json:"addrs"`
	TTL   uint32   `json:"ttl"`
	Epoch string   `json:"epoch"`
}

func (p *PowerDNS) zoneURL() string {
	id := p.ServerID
	if id == "" {
		id = "localhost"
	}
	return strings.TrimSuffix(p.API, "/") + "/api/v1/servers/" + url.PathEscape(id) + "/zones/" + url.PathEscape(dns.Fqdn(p.Zone))
}

// APIError is an answer of the API other than success.
type APIError struct {
	Method string
	Status int
	Msg    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("PowerDNS API %s: HTTP %d: %s", e.Method, e.Status, e.Msg)
}

// do sends one request to the zone's URL (plus suffix). PowerDNS with
// SQLite answers 500 when its database is busy (another write, its own
// background writes) and the write is then not applied: that is retried,
// a few times with backoff.
func (p *PowerDNS) do(ctx context.Context, method, suffix string, body any, out any) error {
	var err error
	for attempt, wait := 0, 20*time.Millisecond; attempt < 6; attempt, wait = attempt+1, wait*2 {
		err = p.once(ctx, method, suffix, body, out)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
	return err
}

func (p *PowerDNS) once(ctx context.Context, method, suffix string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.zoneURL()+suffix, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", p.APIKey)
	req.Header.Set("Content-Type", "application/json")
	hc := p.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("PowerDNS API %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized {
			msg += " (check the API key file)"
		}
		return &APIError{Method: method, Status: resp.StatusCode, Msg: excerpt(msg)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type pdnsRecord struct {
	Content  string `json:"content"`
	Disabled bool   `json:"disabled"`
}

type pdnsRRset struct {
	Name       string       `json:"name"`
	Type       string       `json:"type"`
	TTL        uint32       `json:"ttl,omitempty"`
	ChangeType string       `json:"changetype,omitempty"`
	Records    []pdnsRecord `json:"records"`
}

type pdnsZone struct {
	Serial uint32      `json:"serial"`
	RRsets []pdnsRRset `json:"rrsets"`
}

// read is the zone as the API has it, without the fence.
func (p *PowerDNS) read(ctx context.Context) (Current, error) {
	var z pdnsZone
	if err := p.do(ctx, http.MethodGet, "", nil, &z); err != nil {
		return Current{}, err
	}
	cur := Current{Serial: z.Serial}
	for _, rs := range z.RRsets {
		switch {
		case strings.EqualFold(rs.Name, dns.Fqdn(p.Name)) && rs.Type == "A":
			for _, r := range rs.Records {
				if !r.Disabled {
					cur.Addrs = append(cur.Addrs, r.Content)
				}
			}
			cur.TTL = rs.TTL
		case strings.EqualFold(rs.Name, dns.Fqdn(p.EpochName)) && rs.Type == "TXT":
			for _, r := range rs.Records {
				if !r.Disabled {
					cur.EpochTXT = unquoteTXT(r.Content)
				}
			}
		}
	}
	sort.Strings(cur.Addrs)
	cur.Epoch = ParseEpoch(cur.EpochTXT)
	return cur, nil
}

// Read returns the zone's records; with a fence holding a newer state
// (its writer died before its PATCH) it completes that write first.
func (p *PowerDNS) Read(ctx context.Context) (Current, error) {
	cur, err := p.read(ctx)
	if err != nil || p.Fence == nil {
		return cur, err
	}
	b, version, err := p.Fence.Get(ctx)
	if err != nil {
		return cur, fmt.Errorf("the PowerDNS fence: %w", err)
	}
	if version == 0 {
		return cur, nil
	}
	var f fenceState
	if err := json.Unmarshal(b, &f); err != nil {
		return cur, fmt.Errorf("the PowerDNS fence holds no state (%v): delete the key to reset it", err)
	}
	if ParseEpoch(f.Epoch).N <= cur.Epoch.N {
		return cur, nil
	}
	if err := p.patch(ctx, f, true); err != nil {
		return cur, fmt.Errorf("completing the fenced write of epoch %d: %w", ParseEpoch(f.Epoch).N, err)
	}
	return p.read(ctx)
}

// swap moves the fence from the state cur was read in to next.
func (p *PowerDNS) swap(ctx context.Context, cur Current, next fenceState) error {
	if p.Fence == nil {
		return errors.New("the PowerDNS provider has no fence: it is read-only here")
	}
	// The API itself must still show what was read: this also proves the
	// credentials before the fence is taken (a writer that cannot PATCH
	// must not leave its state in the fence for others to complete).
	if now, err := p.read(ctx); err != nil {
		return err
	} else if !now.Same(cur) {
		return ErrConflict
	}
	b, version, err := p.Fence.Get(ctx)
	if err != nil {
		return fmt.Errorf("the PowerDNS fence: %w", err)
	}
	if version != 0 {
		var f fenceState
		if err := json.Unmarshal(b, &f); err == nil && ParseEpoch(f.Epoch).N > cur.Epoch.N {
			return fmt.Errorf("%w: epoch %d was written after epoch %d was read", ErrConflict, ParseEpoch(f.Epoch).N, cur.Epoch.N)
		}
	}
	val, _ := json.Marshal(next)
	ok, err := p.Fence.Put(ctx, val, version)
	if err != nil {
		return fmt.Errorf("the PowerDNS fence: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: another writer took the fence", ErrConflict)
	}
	return nil
}

// patch writes the state: the address RRset and, with epoch, the epoch
// record, in one PATCH (one backend transaction).
func (p *PowerDNS) patch(ctx context.Context, f fenceState, epoch bool) error {
	a := pdnsRRset{Name: dns.Fqdn(p.Name), Type: "A", TTL: f.TTL, ChangeType: "REPLACE", Records: []pdnsRecord{}}
	for _, addr := range f.Addrs {
		a.Records = append(a.Records, pdnsRecord{Content: addr})
	}
	sets := []pdnsRRset{a}
	if epoch {
		sets = append(sets, pdnsRRset{Name: dns.Fqdn(p.EpochName), Type: "TXT", TTL: f.TTL, ChangeType: "REPLACE",
			Records: []pdnsRecord{{Content: quoteTXT(f.Epoch)}}})
	}
	if err := p.do(ctx, http.MethodPatch, "", map[string]any{"rrsets": sets}, nil); err != nil {
		return err
	}
	// PowerDNS notifies secondaries on its own only every
	// xfr-cycle-interval; ask now (best effort: the write is done, and
	// WaitPropagated reports a secondary that lags).
	p.do(ctx, http.MethodPut, "/notify", nil, nil)
	return nil
}

// Move swaps the fence, then writes the addresses and epoch.
func (p *PowerDNS) Move(ctx context.Context, cur Current, addrs []string, ttl uint32, e Epoch) error {
	if err := ipv4s(addrs); err != nil {
		return err
	}
	next := fenceState{Addrs: append([]string(nil), addrs...), TTL: ttl, Epoch: e.String()}
	sort.Strings(next.Addrs)
	if err := p.swap(ctx, cur, next); err != nil {
		return err
	}
	if err := p.patch(ctx, next, true); err != nil {
		return fmt.Errorf("%w (the fence holds epoch %d: the next read completes the write)", err, e.N)
	}
	return nil
}

// SetTTL swaps the fence, then rewrites the addresses with ttl.
func (p *PowerDNS) SetTTL(ctx context.Context, cur Current, ttl uint32) error {
	if cur.TTL == ttl || len(cur.Addrs) == 0 {
		return nil
	}
	next := fenceState{Addrs: cur.Addrs, TTL: ttl, Epoch: cur.EpochTXT}
	if err := p.swap(ctx, cur, next); err != nil {
		return err
	}
	return p.patch(ctx, next, false)
}

// quoteTXT is TXT content in zone-file syntax, cut into 255-byte strings.
func quoteTXT(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, s[:255])
		s = s[255:]
	}
	parts = append(parts, s)
	for i, part := range parts {
		parts[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(part) + `"`
	}
	return strings.Join(parts, " ")
}

// unquoteTXT joins the quoted strings of TXT content.
func unquoteTXT(s string) string {
	var b strings.Builder
	in, esc := false, false
	for _, r := range s {
		switch {
		case esc:
			b.WriteRune(r)
			esc = false
		case r == '\\' && in:
			esc = true
		case r == '"':
			in = !in
		case in:
			b.WriteRune(r)
		}
	}
	return b.String()
}
