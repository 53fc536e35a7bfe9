package ssupolicy

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestAllows(t *testing.T) {
	p := Policy{Zone: "ap.home.arpa", Key: "t-clients"}
	for _, tc := range []struct {
		signer, name, rrtype string
		want                 bool
	}{
		{"t-clients", "_acme-challenge.host.ap.home.arpa", "TXT", true},
		{"t-clients.", "_ACME-Challenge.Host.AP.home.arpa.", "txt", true},
		{"t-clients", "_acme-challenge.ap.home.arpa", "TXT", true}, // the apex's own record
		{"t-clients", "_acme-challenge.a.b.ap.home.arpa", "TXT", true},
		{"t-clients", "ap.home.arpa", "TXT", false},                         // the apex
		{"t-clients", "www.ap.home.arpa", "TXT", false},                     // not DNS-01
		{"t-clients", "_cairn-epoch.acme.ap.home.arpa", "TXT", false},       // the epoch record
		{"t-clients", "x._acme-challenge.ap.home.arpa", "TXT", false},       // prefix not first
		{"t-clients", "_acme-challenge.host.ap.home.arpa", "A", false},      // only TXT
		{"t-clients", "_acme-challenge.host.xap.home.arpa", "TXT", false},   // another zone
		{"t-clients", "_acme-challenge.", "TXT", false},                     // no zone
		{"t-controller", "_acme-challenge.host.ap.home.arpa", "TXT", false}, // another key
		{"", "_acme-challenge.host.ap.home.arpa", "TXT", false},             // unsigned
	} {
		if got := p.Allows(tc.signer, tc.name, tc.rrtype); got != tc.want {
			t.Errorf("Allows(%q, %q, %q) = %v, want %v", tc.signer, tc.name, tc.rrtype, got, tc.want)
		}
	}
	if (Policy{Key: "k"}).Allows("k", "_acme-challenge.x", "TXT") {
		t.Error("a policy without a zone allowed a write")
	}
}

// What BIND 9.18.49's named sent for `update add _acme-challenge.h.z.test.
// 10 TXT "x"` signed with key k (captured from a real named).
var fromNamed = []byte("\x00\x00\x00\x01\x00\x00\x00@k\x00_acme-challenge.h.z.test\x00127.0.0.1\x00TXT\x00k/163/2407\x00\x00\x00\x00\x00")

func TestReadRequestOfNamed(t *testing.T) {
	req, err := ReadRequest(bytes.NewReader(fromNamed))
	if err != nil {
		t.Fatal(err)
	}
	want := Request{Signer: "k", Name: "_acme-challenge.h.z.test", Addr: "127.0.0.1", Type: "TXT", Key: "k/163/2407"}
	if req != want {
		t.Fatalf("got %+v, want %+v", req, want)
	}
	var b bytes.Buffer
	if err := WriteRequest(&b, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), fromNamed) {
		t.Fatalf("WriteRequest wrote %q, named writes %q", b.Bytes(), fromNamed)
	}
	for _, bad := range [][]byte{
		fromNamed[:20], // truncated
		append([]byte("\x00\x00\x00\x02"), fromNamed[4:]...),                 // version
		append([]byte("\x00\x00\x00\x01\x7f\x00\x00\x00"), fromNamed[8:]...), // length
		[]byte("\x00\x00\x00\x01\x00\x00\x00\x0ck\x00_a"),                    // no NUL after name
	} {
		if _, err := ReadRequest(bytes.NewReader(bad)); err == nil {
			t.Errorf("ReadRequest(%q) accepted", bad)
		}
	}
}

func ask(t *testing.T, sock string, req Request) (uint32, error) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := WriteRequest(c, req); err != nil {
		t.Fatal(err)
	}
	var out [4]byte
	if _, err := io.ReadFull(c, out[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(out[:]), nil
}

func TestServeAnswers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, Policy{Zone: "z.test", Key: "k"}, slog.New(slog.DiscardHandler))
	}()
	if _, err := Listen(sock); err == nil {
		t.Error("a second server took the socket of a running one")
	}
	if got, err := ask(t, sock, Request{Signer: "k", Name: "_acme-challenge.h.z.test", Type: "TXT"}); err != nil || got != 1 {
		t.Errorf("allowed record: answer %d, %v", got, err)
	}
	if got, err := ask(t, sock, Request{Signer: "k", Name: "z.test", Type: "TXT"}); err != nil || got != 0 {
		t.Errorf("apex record: answer %d, %v", got, err)
	}
	// A malformed request gets no answer: the connection closes.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("\x00\x00\x00\x09\x00\x00\x00\x08"))
	if n, err := io.ReadFull(c, make([]byte, 4)); err == nil {
		t.Errorf("malformed request answered (%d bytes)", n)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("/" + strings.Repeat("d", 120)); err == nil {
		t.Error("Listen took a path longer than sun_path")
	}
}
