// Package abusetest is what a stranger does to a public listener, for the
// abuse tests: half-open TLS handshakes (a ClientHello, then silence) and
// slow request bodies, from a given loopback source address, bounded in
// count and time. Test code only.
package abusetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what one attacker did and saw.
type Result struct {
	Source   string
	Attempts int64 // connections opened (or tried)
	DialErrs int64 // refused or reset at connect
	// Held: the most connections open at once that the server had not
	// closed yet; ClosedAfter: how long the server kept them, sorted,
	// from the end of the attacker's send (a slow body's clock is the
	// request's, which starts after its TLS handshake), or from connect
	// when the server cut the send short.
	Held        int64
	ClosedAfter []time.Duration
	DialErr     string // the last error at connect
}

// Longest is the longest time the server held one of the attacker's
// connections (0 if none).
func (r Result) Longest() time.Duration {
	if len(r.ClosedAfter) == 0 {
		return 0
	}
	return r.ClosedAfter[len(r.ClosedAfter)-1]
}

func (r Result) String() string {
	s := fmt.Sprintf("%s: %d connections, at most %d open at once, longest held %v",
		r.Source, r.Attempts, r.Held, r.Longest().Round(time.Millisecond))
	if r.DialErrs > 0 {
		s += fmt.Sprintf("; %d refused or reset at connect (%s)", r.DialErrs, r.DialErr)
	}
	return s
}

// ClientHello is the first flight a TLS client sends for serverName.
func ClientHello(serverName string) ([]byte, error) {
	rec := &recorder{}
	err := tls.Client(rec, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	if rec.buf.Len() == 0 {
		return nil, fmt.Errorf("no ClientHello written: %v", err)
	}
	return rec.buf.Bytes(), nil
}

// Attack runs workers connections at once from src to addr, each opened,
// given send, then left silent until the server closes it, and again,
// until n connections were opened or d passed (or ctx ended). A
// connection the server has not closed when the attack ends is closed by
// the attacker and counted as held for the whole of it.
func Attack(ctx context.Context, src, addr string, send func(net.Conn) error, workers int, n int64, d time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	r := Result{Source: src}
	var attempts, dialErrs, open, held atomic.Int64
	var mu sync.Mutex
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && attempts.Add(1) <= n {
				c, err := dialer.DialContext(ctx, "tcp", addr)
				if err != nil {
					dialErrs.Add(1)
					mu.Lock()
					r.DialErr = err.Error()
					mu.Unlock()
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				start := time.Now()
				if now := open.Add(1); now > held.Load() {
					held.Store(now) // a racy maximum is fine for a figure
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				if send(c) == nil {
					start = time.Now()
					io.Copy(io.Discard, c) // until the server closes it
				}
				stop()
				c.Close()
				open.Add(-1)
				mu.Lock()
				r.ClosedAfter = append(r.ClosedAfter, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.Attempts, r.DialErrs, r.Held = min(attempts.Load(), n), dialErrs.Load(), held.Load()
	sort.Slice(r.ClosedAfter, func(i, j int) bool { return r.ClosedAfter[i] < r.ClosedAfter[j] })
	return r
}

// HalfOpen sends hello (ClientHello) and nothing more.
func HalfOpen(hello []byte) func(net.Conn) error {
	return func(c net.Conn) error {
		_, err := c.Write(hello)
		return err
	}
}

// SlowBody completes the TLS handshake for serverName, sends the headers of
// a POST to path announcing a 64 KiB body, then one byte of it every
// second.
func SlowBody(serverName, path string) func(net.Conn) error {
	return func(c net.Conn) error {
		tc := tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			return err
		}
		fmt.Fprintf(tc, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/jose+json\r\nContent-Length: 65536\r\n\r\n", path, serverName)
		go func() {
			for {
				time.Sleep(time.Second)
				if _, err := tc.Write([]byte("{")); err != nil {
					return
				}
			}
		}()
		return nil
	}
}

// recorder is a net.Conn that keeps what is written and has nothing to read.
type recorder struct{ buf bytes.Buffer }

func (r *recorder) Read([]byte) (int, error)         { return 0, errors.New("recorder: nothing to read") }
func (r *recorder) Write(p []byte) (int, error)      { return r.buf.Write(p) }
func (r *recorder) Close() error                     { return nil }
func (r *recorder) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (r *recorder) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (r *recorder) SetDeadline(time.Time) error      { return nil }
func (r *recorder) SetReadDeadline(time.Time) error  { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }

// Metric reads one sample (name with its labels, as exposed) from the
// Prometheus text at http://addr/metrics.
func Metric(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no %s in http://%s/metrics", name, addr)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
