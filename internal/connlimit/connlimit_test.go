package connlimit

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// fakeListener fails with errs, in order, then hands out conns.
type fakeListener struct {
	net.Listener
	errs  []error
	conns []net.Conn
}

func (f *fakeListener) Accept() (net.Conn, error) {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	if len(f.conns) == 0 {
		return nil, net.ErrClosed
	}
	c := f.conns[0]
	f.conns = f.conns[1:]
	return c, nil
}

func (f *fakeListener) Close() error { return nil }

// pipeConn is one end of a pipe with a TCP remote address.
type pipeConn struct {
	net.Conn
	remote string
}

func (p pipeConn) RemoteAddr() net.Addr { a, _ := net.ResolveTCPAddr("tcp", p.remote); return a }

func fakeConn(remote string) net.Conn {
	a, _ := net.Pipe()
	return pipeConn{Conn: a, remote: remote}
}

// Running out of descriptors (EMFILE), or an aborted connection, is
// retried: Accept returns the next connection, not the error.
func TestAcceptErrorsAreRetried(t *testing.T) {
	want := fakeConn("127.0.0.9:1000")
	l := New(&fakeListener{errs: []error{syscall.EMFILE, syscall.ECONNABORTED, errors.New("odd")}, conns: []net.Conn{want}}, 0, 0, nil)
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if c.(*conn).Conn != want {
		t.Error("not the listener's connection")
	}
	if n := l.Stats.AcceptErrors.Load(); n != 3 {
		t.Errorf("accept errors counted %d, want 3", n)
	}
	// A closed listener ends Accept.
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("after the last connection: %v, want net.ErrClosed", err)
	}
}

// Over a source's cap, or the total, a connection is closed at once and
// counted; closing an admitted one frees its place (once).
func TestCaps(t *testing.T) {
	a1, a2, a3, b1, b2 := fakeConn("127.0.0.1:1"), fakeConn("127.0.0.1:2"), fakeConn("127.0.0.1:3"), fakeConn("127.0.0.2:1"), fakeConn("127.0.0.3:1")
	l := New(&fakeListener{conns: []net.Conn{a1, a2, a3, b1, b2}}, 3, 2, nil)
	var got []net.Conn
	for range 3 {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	// a1, a2 admitted; a3 over 127.0.0.1's cap of 2; b1 admitted; b2 over the total of 3.
	if got[0].(*conn).Conn != a1 || got[1].(*conn).Conn != a2 || got[2].(*conn).Conn != b1 {
		t.Fatalf("admitted %v", got)
	}
	if l.Stats.RefusedPer.Load() != 1 {
		t.Errorf("per-source refusals %d, want 1", l.Stats.RefusedPer.Load())
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) { // b2 refused, then none left
		t.Fatal(err)
	}
	if l.Stats.RefusedTotal.Load() != 1 || l.Stats.Open.Load() != 3 {
		t.Errorf("total refusals %d (want 1), open %d (want 3)", l.Stats.RefusedTotal.Load(), l.Stats.Open.Load())
	}
	got[0].Close()
	got[0].Close()
	if l.Stats.Open.Load() != 2 || l.bySource[got[1].(*conn).src] != 1 {
		t.Errorf("after one close: open %d, 127.0.0.1 holds %d", l.Stats.Open.Load(), l.bySource[got[1].(*conn).src])
	}
}
