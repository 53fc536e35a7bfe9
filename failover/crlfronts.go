package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/site"
)

// CRL fronts. Every CRL name (crl.<site>.<zone>) lists every site's CRL
// front, since each front serves every site's CRLs. A front on a host
// that is off black-holes connections: a relying party that tries it
// first waits out its connect timeout, and many give up before the next
// address. So the leading controller withdraws a front that fails its
// crlfront probe twice running from every CRL name and puts it back after
// two successes, with compare-and-swap updates the controller's key is
// granted (site.CRLNames). A name never loses its last front: with every
// front failing, every front stays listed.

const (
	frontFailsToWithdraw = 2
	frontOKsToRestore    = 2
	// crlNamesEvery: the names are read back this often even when
	// nothing changed, so a name changed behind the controller's back (a
	// zone restored, an operator) is put right.
	crlNamesEvery = 30 * time.Second
)

// frontState is one site's CRL front as this controller's probes see it.
type frontState struct {
	addr      string
	known     bool // probed at least once since the start
	fails     int  // consecutive failures
	oks       int  // consecutive successes
	withdrawn bool
	since     time.Time
	reason    string
}

// CRLFrontStatus is one CRL front in the status.
type CRLFrontStatus struct {
	Site      string    `json:"site"`
	Address   string    `json:"address"`
	Withdrawn bool      `json:"withdrawn"`
	Since     time.Time `json:"since,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// crlFronts tracks the fronts and the names listing them.
type crlFronts struct {
	names  []site.CRLName
	fronts map[string]*frontState // by site
	// dirty: a front changed state since the names were last put right.
	dirty   bool
	checked time.Time
	warned  string // the last write error logged (logged once per kind)
}

func newCRLFronts(names []site.CRLName) *crlFronts {
	f := &crlFronts{names: names, fronts: map[string]*frontState{}}
	for _, n := range names {
		for _, fr := range n.Fronts {
			if f.fronts[fr.Site] == nil {
				f.fronts[fr.Site] = &frontState{addr: fr.Addr.String()}
			}
		}
	}
	return f
}

// observe takes a crlfront probe result (c.mu held).
func (f *crlFronts) observe(r healthcheck.Result, now time.Time) {
	fs := f.fronts[r.Site]
	if fs == nil {
		return
	}
	if !fs.known {
		fs.known, f.dirty = true, true // the names may list it or not: now known
	}
	if r.OK {
		fs.fails, fs.oks = 0, fs.oks+1
		if fs.withdrawn && fs.oks >= frontOKsToRestore {
			fs.withdrawn, fs.since, fs.reason, f.dirty = false, now, fmt.Sprintf("served %d times running", fs.oks), true
		}
		return
	}
	fs.oks, fs.fails = 0, fs.fails+1
	if !fs.withdrawn && fs.fails >= frontFailsToWithdraw {
		detail := "failed"
		if st := r.FailedStep(); st != nil {
			detail = cluster.FirstLine(st.Detail)
		}
		fs.withdrawn, fs.since, fs.reason, f.dirty = true, now, fmt.Sprintf("failed %d times running: %s", fs.fails, detail), true
	}
}

// want is what name n should list, given what it lists now: the fronts
// seen serving, withdrawn ones left out, the ones not probed yet kept as
// they are; never nothing.
func (f *crlFronts) want(n site.CRLName, now []string) []string {
	var out, all []string
	for _, fr := range n.Fronts {
		a := fr.Addr.String()
		all = append(all, a)
		fs := f.fronts[fr.Site]
		switch {
		case fs.known && !fs.withdrawn:
			out = append(out, a)
		case !fs.known && slices.Contains(now, a):
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = all
	}
	slices.Sort(out)
	return out
}

// status lists the fronts (c.mu held).
func (f *crlFronts) status() []CRLFrontStatus {
	var out []CRLFrontStatus
	for _, n := range f.names {
		if fs := f.fronts[n.Site]; fs != nil {
			out = append(out, CRLFrontStatus{Site: n.Site, Address: fs.addr, Withdrawn: fs.withdrawn, Since: fs.since, Reason: fs.reason})
		}
	}
	return out
}

// due says whether the names should be put right now (c.mu held).
func (f *crlFronts) due(now time.Time) bool {
	return len(f.names) > 0 && (f.dirty || now.Sub(f.checked) >= crlNamesEvery)
}

// reconcileCRLNames makes every CRL name list the fronts it should, when
// a front changed state or crlNamesEvery passed (the leader only).
func (c *Controller) reconcileCRLNames(ctx context.Context) {
	rec, ok := c.DNS.(acmedns.Records)
	c.mu.Lock()
	f := c.fronts
	if f == nil || !f.due(c.now()) {
		c.mu.Unlock()
		return
	}
	f.dirty, f.checked = false, c.now()
	names := f.names
	for site, fs := range f.fronts {
		c.metrics.setFrontWithdrawn(site, fs.withdrawn)
	}
	c.mu.Unlock()
	if !ok {
		f.warn(c, fmt.Errorf("%s cannot write the CRL names: a CRL front that does not serve stays listed", c.DNS))
		return
	}
	var errs []error
	for _, n := range names {
		cur, err := rec.ReadA(ctx, n.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", n.Name, err))
			continue
		}
		c.mu.Lock()
		want := f.want(n, cur.Addrs)
		c.mu.Unlock()
		if slices.Equal(want, cur.Addrs) {
			continue
		}
		err = rec.ReplaceA(ctx, cur, want)
		c.metrics.crlUpdates.WithLabelValues(result(err)).Inc()
		if err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", n.Name, err))
			continue
		}
		c.Log.Info("CRL name rewritten", "name", n.Name, "from", strings.Join(cur.Addrs, ","), "to", strings.Join(want, ","))
	}
	if len(errs) > 0 {
		c.mu.Lock()
		f.dirty = true // again at the next step
		c.mu.Unlock()
	}
	if err := errors.Join(errs...); err != nil {
		f.warn(c, err)
	} else {
		f.warned = ""
	}
}

// warn logs a CRL-name problem once until it changes or clears (the
// deciding goroutine only).
func (f *crlFronts) warn(c *Controller, err error) {
	if msg := err.Error(); msg != f.warned {
		f.warned = msg
		c.Log.Warn("CRL names not put right; retrying", "err", err)
	}
}
