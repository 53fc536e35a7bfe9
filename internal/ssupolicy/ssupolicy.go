// Package ssupolicy answers BIND's update-policy "external" rule for the
// cluster zone. BIND 9.18 has no rule type that matches a name by its
// first label (its "wildcard" rule takes only "*.<name>"), so the clients'
// shared TSIG key cannot be limited to _acme-challenge.<anything> in
// named.conf itself; named asks this server instead, over a Unix socket,
// for every record of an update no earlier rule granted.
//
// The protocol (BIND's lib/dns/ssu_external.c): named connects, writes one
// request — version (4 bytes, network order, 1), total length of the
// request (4 bytes), then the signer, the record's name, the client's
// address, the record type and the key, each NUL-terminated, then a token
// length (4 bytes) and the token — and reads a 4-byte answer: 1 allows,
// 0 refuses. named refuses when the server is down (fail closed).
package ssupolicy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Prefix is the first label of every DNS-01 record (RFC 8555 §8.4).
const Prefix = "_acme-challenge."

// Policy is what the clients' shared key may write.
type Policy struct {
	Zone string // the cluster zone, e.g. ap.home.arpa
	Key  string // the clients' shared TSIG key name, e.g. lab-clients
}

// canonical is a DNS name in lower case without its final dot.
func canonical(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// Allows reports whether signer may write a record of rrtype at name:
// only the shared key, only TXT, only _acme-challenge.<name in the zone>
// (the zone's apex included).
func (p Policy) Allows(signer, name, rrtype string) bool {
	zone, name := canonical(p.Zone), canonical(name)
	if zone == "" || canonical(signer) != canonical(p.Key) || !strings.EqualFold(rrtype, "TXT") {
		return false
	}
	rest, ok := strings.CutPrefix(name, Prefix)
	return ok && (rest == zone || strings.HasSuffix(rest, "."+zone))
}

// Request is one question from named.
type Request struct {
	Signer, Name, Addr, Type, Key string
}

// maxRequest bounds a request (a GSS-TSIG token is the only large part).
const maxRequest = 64 << 10

// ReadRequest reads one request from r.
func ReadRequest(r io.Reader) (Request, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Request{}, err
	}
	if v := binary.BigEndian.Uint32(hdr[:4]); v != 1 {
		return Request{}, fmt.Errorf("protocol version %d, want 1", v)
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n < 8 || n > maxRequest {
		return Request{}, fmt.Errorf("request length %d out of range", n)
	}
	body := make([]byte, n-8)
	if _, err := io.ReadFull(r, body); err != nil {
		return Request{}, err
	}
	var fields [5]string
	for i := range fields {
		end := strings.IndexByte(string(body), 0)
		if end < 0 {
			return Request{}, errors.New("truncated request")
		}
		fields[i], body = string(body[:end]), body[end+1:]
	}
	return Request{Signer: fields[0], Name: fields[1], Addr: fields[2], Type: fields[3], Key: fields[4]}, nil
}

// WriteRequest writes req as named does (with no token): for tests and
// checks that talk to the server as named would.
func WriteRequest(w io.Writer, req Request) error {
	var body []byte
	for _, f := range []string{req.Signer, req.Name, req.Addr, req.Type, req.Key} {
		body = append(append(body, f...), 0)
	}
	body = binary.BigEndian.AppendUint32(body, 0)
	msg := binary.BigEndian.AppendUint32(nil, 1)
	msg = binary.BigEndian.AppendUint32(msg, uint32(8+len(body)))
	_, err := w.Write(append(msg, body...))
	return err
}

// Listen makes the socket at path (a stale one from a killed server is
// replaced), reachable by its owner and group only: named runs as the
// same user (the lab) or has the server's group (hosts).
func Listen(path string) (net.Listener, error) {
	if len(path) >= 108 { // sizeof(sun_path) on Linux, with its NUL
		return nil, fmt.Errorf("socket path %s is %d bytes, longer than a Unix socket path may be (107): use a shorter directory", path, len(path))
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: another policy server answers there", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve answers every connection on ln until ctx ends. Each answer is
// logged (signer, name, type, decision; never a key).
func Serve(ctx context.Context, ln net.Listener, p Policy, log *slog.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() { answer(c, p, log) })
	}
}

// answer reads one request and writes the decision; a malformed request
// is refused.
func answer(c net.Conn, p Policy, log *slog.Logger) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req, err := ReadRequest(c)
	if err != nil {
		log.Warn("malformed update-policy request", "err", err)
		return // named treats a closed connection as a refusal
	}
	ok := p.Allows(req.Signer, req.Name, req.Type)
	log.Info("update-policy", "signer", req.Signer, "name", req.Name, "type", req.Type, "client", req.Addr, "allowed", ok)
	var out [4]byte
	if ok {
		binary.BigEndian.PutUint32(out[:], 1)
	}
	c.Write(out[:])
}
