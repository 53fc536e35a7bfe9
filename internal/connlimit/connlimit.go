// Package connlimit bounds what strangers can hold of a public listener
// (the ACME and CRL fronts): connections in total and per source address,
// and accept errors that never end the server. A connection over a cap is
// closed at once (reset, so it holds no descriptor in TIME_WAIT) and
// counted; a rate-limited log line says so.
package connlimit

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for a site's public listener. Two sources can then hold at most
// 2×PerSource descriptors, each for at most the server's handshake and
// header deadlines; a client network behind one NAT address still gets
// PerSource concurrent connections.
const (
	DefaultTotal     = 4096
	DefaultPerSource = 256
)

// Stats are the listener's counters (Prometheus exposes them).
type Stats struct {
	Open         atomic.Int64 // connections held now
	RefusedTotal atomic.Int64 // closed at once: the total cap was reached
	RefusedPer   atomic.Int64 // closed at once: the source's cap was reached
	AcceptErrors atomic.Int64 // accept failed (EMFILE, ECONNABORTED, …) and was retried
}

// Listener wraps a net.Listener with the caps.
type Listener struct {
	net.Listener
	total, perSource int
	log              *slog.Logger
	Stats            *Stats

	mu       sync.Mutex
	open     int
	bySource map[netip.Addr]int
	lastLog  time.Time
	unlogged int64 // refusals since the last log line

	closed atomic.Bool
	done   chan struct{}
	once   sync.Once
}

// New caps l; total or perSource ≤ 0 take the defaults.
func New(l net.Listener, total, perSource int, log *slog.Logger) *Listener {
	if total <= 0 {
		total = DefaultTotal
	}
	if perSource <= 0 {
		perSource = DefaultPerSource
	}
	return &Listener{Listener: l, total: total, perSource: perSource, log: log, Stats: &Stats{},
		bySource: map[netip.Addr]int{}, done: make(chan struct{})}
}

// logEvery is how often a line says that connections were refused or
// accept failed (with how many since the last line).
const logEvery = 10 * time.Second

// Accept returns the next connection within the caps. Accept errors other
// than the listener being closed are retried with a growing pause (5 ms up
// to 1 s): running out of descriptors must slow the server, not end it.
func (l *Listener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			l.Stats.AcceptErrors.Add(1)
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			l.note("accept failed; retrying", "err", err, "pause", pause)
			select {
			case <-time.After(pause):
			case <-l.done:
				return nil, net.ErrClosed
			}
			continue
		}
		pause = 0
		src := sourceOf(c)
		if why := l.admit(src); why != "" {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			l.note("connection refused: "+why, "source", src.String())
			continue
		}
		l.Stats.Open.Add(1)
		return &conn{Conn: c, l: l, src: src}, nil
	}
}

func sourceOf(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// admit takes a place for src, or says which cap is reached.
func (l *Listener) admit(src netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.total {
		l.Stats.RefusedTotal.Add(1)
		return "total cap reached"
	}
	if l.bySource[src] >= l.perSource {
		l.Stats.RefusedPer.Add(1)
		return "per-source cap reached"
	}
	l.open++
	l.bySource[src]++
	return ""
}

func (l *Listener) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
	l.Stats.Open.Add(-1)
}

// note logs at most one line per logEvery, saying how many events it
// stands for.
func (l *Listener) note(msg string, args ...any) {
	l.mu.Lock()
	l.unlogged++
	if time.Since(l.lastLog) < logEvery {
		l.mu.Unlock()
		return
	}
	n := l.unlogged
	l.unlogged, l.lastLog = 0, time.Now()
	l.mu.Unlock()
	if l.log != nil {
		l.log.Warn(msg, append(args, "events since last line", n, "total cap", l.total, "per-source cap", l.perSource)...)
	}
}

// Close stops accepting (a retry pause ends at once).
func (l *Listener) Close() error {
	l.closed.Store(true)
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// conn gives its place back once, when closed.
type conn struct {
	net.Conn
	l    *Listener
	src  netip.Addr
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}

// Unwrap is the accepted connection (for code that needs *net.TCPConn).
func (c *conn) Unwrap() net.Conn { return c.Conn }

// CloseWrite half-closes when the accepted connection can (a splice
// passes the end of one direction on).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
