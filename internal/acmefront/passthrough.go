package acmefront

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The front's port also carries the site's admin gRPC (RA and SA) for the
// failover controller, which revokes and blocks keys at the issuing site
// from another host (docs/revocation.md). A TLS connection whose
// ClientHello names one of Passthrough's server names (ra.boulder,
// sa.boulder: what Boulder's gRPC clients send) is not terminated here:
// its bytes are spliced to that internal service, so the site's own mTLS
// (its internal CA, the service's list of client names) decides, end to
// end. Every other connection is the ACME server.

// A connection has deadlines.handshake to send its ClientHello before the
// front gives up on it; spliceIdle is how long a
// spliced connection may stay silent both ways (the admin tool's calls
// take milliseconds).
const spliceIdle = 2 * time.Minute

// errPeeked stops the handshake once the ClientHello has been read.
var errPeeked = errors.New("client hello read")

// serverName reads a TLS ClientHello from r and returns the server name it
// asks for ("" if none).
func serverName(r io.Reader) (string, error) {
	var name string
	err := tls.Server(readOnly{r}, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name = h.ServerName
		return nil, errPeeked
	}}).Handshake()
	if errors.Is(err, errPeeked) {
		return name, nil
	}
	return "", err
}

// readOnly is a net.Conn that only reads (the peek's TLS server must not
// answer the client).
type readOnly struct{ r io.Reader }

func (c readOnly) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (readOnly) Write([]byte) (int, error)        { return 0, io.ErrClosedPipe }
func (readOnly) Close() error                     { return nil }
func (readOnly) LocalAddr() net.Addr              { return nil }
func (readOnly) RemoteAddr() net.Addr             { return nil }
func (readOnly) SetDeadline(time.Time) error      { return nil }
func (readOnly) SetReadDeadline(time.Time) error  { return nil }
func (readOnly) SetWriteDeadline(time.Time) error { return nil }

// replayConn gives back the bytes the peek read before the rest.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// sniListener hands the ACME server only its own connections; the others
// are spliced to their internal service.
type sniListener struct {
	net.Listener
	routes map[string]string
	log    *slog.Logger
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	// spliced counts connections passed through.
	spliced atomic.Int64
}

func newSNIListener(l net.Listener, routes map[string]string, log *slog.Logger) *sniListener {
	s := &sniListener{Listener: l, routes: routes, log: log, conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop()
	return s
}

// acceptLoop ends only when the listener is closed: the inner listener
// (connlimit) retries every other accept error.
func (s *sniListener) acceptLoop() {
	defer s.Close()
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return
		}
		go s.route(c)
	}
}

// route peeks at the ClientHello and sends the connection on.
func (s *sniListener) route(c net.Conn) {
	var seen bytes.Buffer
	c.SetReadDeadline(time.Now().Add(deadlines.handshake))
	name, err := serverName(io.TeeReader(c, &seen))
	c.SetReadDeadline(time.Time{})
	replay := &replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(seen.Bytes()), c)}
	if to, ok := s.routes[name]; ok && err == nil {
		s.splice(replay, name, to)
		return
	}
	// Not for a passthrough (or not TLS at all: the ACME server's own
	// handshake says so to the client).
	select {
	case s.conns <- replay:
	case <-s.done:
		c.Close()
	}
}

// splice copies both ways between the caller and the internal service.
func (s *sniListener) splice(c net.Conn, name, to string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		s.log.Warn("admin passthrough: the internal service does not answer", "service", name, "addr", to, "from", c.RemoteAddr(), "err", err)
		return
	}
	defer up.Close()
	s.spliced.Add(1)
	s.log.Debug("admin passthrough", "service", name, "from", c.RemoteAddr())
	// Both ends get a deadline spliceIdle ahead at every read, so a
	// connection that goes silent is cut (its two descriptors freed).
	idle := func(a, b net.Conn) {
		d := time.Now().Add(spliceIdle)
		a.SetDeadline(d)
		b.SetDeadline(d)
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		copyWith(dst, src, func() { idle(c, up) })
		if tc, ok := dst.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c.(*replayConn).Conn, up)
	<-done
	<-done
}

// Accept returns the next connection for the ACME server.
func (s *sniListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (s *sniListener) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.Listener.Close()
	})
	return err
}

// copyWith copies src to dst, calling tick before every read.
func copyWith(dst io.Writer, src io.Reader, tick func()) {
	buf := make([]byte, 32<<10)
	for {
		tick()
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
