package acmefront

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A connection that names an internal service reaches that service's own
// TLS (the front does not terminate it); every other one is the front's.
func TestPassthroughByServerName(t *testing.T) {
	serve := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	}
	backend := httptest.NewTLSServer(serve("ra"))
	defer backend.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(serve("acme"))
	front.Listener = newSNIListener(l, map[string]string{"ra.boulder": backend.Listener.Addr().String()}, slog.New(slog.DiscardHandler))
	front.StartTLS()
	defer front.Close()

	for _, c := range []struct{ sni, want string }{{"ra.boulder", "ra"}, {"example.com", "acme"}, {"sa.boulder", "acme"}, {"", "acme"}} {
		var seen *tls.ConnectionState
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: c.sni, InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error { seen = &cs; return nil }}}}
		resp, err := hc.Get("https://" + l.Addr().String() + "/")
		if err != nil {
			t.Fatalf("SNI %q: %v", c.sni, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != c.want {
			t.Errorf("SNI %q reached %q, want %q", c.sni, b, c.want)
		}
		if seen == nil {
			t.Errorf("SNI %q: no TLS", c.sni)
		}
		hc.CloseIdleConnections()
	}
}

// A client that never says hello does not stop the others.
func TestPassthroughSurvivesASilentClient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "acme") }))
	front.Listener = newSNIListener(l, map[string]string{"ra.boulder": "127.0.0.1:1"}, slog.New(slog.DiscardHandler))
	front.StartTLS()
	defer front.Close()
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	hc := front.Client()
	resp, err := hc.Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// ra.boulder with its service down: the caller's handshake fails, no
	// hang, and the front goes on.
	if _, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{ServerName: "ra.boulder", InsecureSkipVerify: true}); err == nil {
		t.Error("handshake with a dead internal service succeeded")
	}
	if resp, err := hc.Get(front.URL); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
}
