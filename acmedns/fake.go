package acmedns

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is an in-memory Provider for tests. It keeps the compare-and-swap
// contract of a real server (a write based on a stale read is
// ErrConflict and changes nothing), records every write, and fails on
// demand. Propagation is immediate at one server, "fake".
type Fake struct {
	mu     sync.Mutex
	cur    Current
	serial uint32
	writes []Current
	// Fail, when set, is what the next Read, Move or SetTTL returns.
	fail error
	// other: the zone's other A RRsets (Records), by lower-case name.
	other          map[string]RRset
	recordsWritten int
}

// NewFake serves addrs with ttl and epoch e.
func NewFake(addrs []string, ttl uint32, e Epoch) *Fake {
	f := &Fake{}
	f.set(addrs, ttl, e.String())
	return f
}

func (f *Fake) set(addrs []string, ttl uint32, txt string) {
	a := append([]string(nil), addrs...)
	sort.Strings(a)
	f.serial++
	f.cur = Current{Addrs: a, TTL: ttl, EpochTXT: txt, Epoch: ParseEpoch(txt), Serial: f.serial}
}

// Set is another writer (an operator, another controller) changing DNS.
func (f *Fake) Set(addrs []string, ttl uint32, e Epoch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set(addrs, ttl, e.String())
}

// FailNext makes the next Read, Move or SetTTL return err.
func (f *Fake) FailNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// Writes returns what each successful Move or SetTTL left.
func (f *Fake) Writes() []Current {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Current(nil), f.writes...)
}

func (f *Fake) takeFail() error {
	err := f.fail
	f.fail = nil
	return err
}

func (f *Fake) String() string { return "fake" }

// Read returns what is served now.
func (f *Fake) Read(context.Context) (Current, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail(); err != nil {
		return Current{}, err
	}
	return f.cur, nil
}

// Move writes if cur is still served.
func (f *Fake) Move(_ context.Context, cur Current, addrs []string, ttl uint32, e Epoch) error {
	if err := ipv4s(addrs); err != nil {
		return err
	}
	return f.write(cur, func() { f.set(addrs, ttl, e.String()) })
}

// SetTTL writes if cur is still served.
func (f *Fake) SetTTL(_ context.Context, cur Current, ttl uint32) error {
	if cur.TTL == ttl || len(cur.Addrs) == 0 {
		return nil
	}
	return f.write(cur, func() { f.set(f.cur.Addrs, ttl, f.cur.EpochTXT) })
}

func (f *Fake) write(cur Current, apply func()) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeFail(); err != nil {
		return err
	}
	if !f.cur.Same(cur) {
		return ErrConflict
	}
	apply()
	f.writes = append(f.writes, f.cur)
	return nil
}

// WaitPropagated reports the one fake server done when it serves addrs.
func (f *Fake) WaitPropagated(_ context.Context, addrs []string, epoch int64, start time.Time) []Propagation {
	f.mu.Lock()
	cur := f.cur
	f.mu.Unlock()
	p := Propagation{Server: "fake"}
	want := append([]string(nil), addrs...)
	sort.Strings(want)
	if sameStrings(cur.Addrs, want) && cur.Epoch.N >= epoch {
		p.Done, p.Lag = true, time.Since(start)
	} else {
		p.Error = "not served"
	}
	return []Propagation{p}
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
