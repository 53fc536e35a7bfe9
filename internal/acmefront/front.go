// Package acmefront is the HTTPS listener of a site's ACME name: it
// terminates TLS and passes every request to the site's Boulder WFE, with
// one exception. A newOrder whose ARI "replaces" names a certificate of
// another site's issuer (a client renewing after the ACME name moved) is
// answered 409 alreadyReplaced, the one error on which lego, acme.sh and
// certmagic retry the order without "replaces". Boulder alone answers 404
// (unknown issuer), which lego ≥ 4.20 treats as final: every default lego
// renewal after a move would fail. The site never learns, accepts or
// revokes another site's certificates (docs/accounts.md, "ARI").
package acmefront

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Config is etc/acme-front.json.
type Config struct {
	Listen   string `json:"listen"`   // the site's public address and ACME port
	Upstream string `json:"upstream"` // the WFE's plain-HTTP listener, http://ip:port
	CertFile string `json:"certFile"` // the WFE's HTTPS certificate chain
	KeyFile  string `json:"keyFile"`
	// Issuers are this site's issuing intermediates (PEM files): a
	// "replaces" naming any other issuer is another site's certificate.
	Issuers []string `json:"issuers"`
}

// maxBody bounds what the front reads of a newOrder (a JWS of a few KiB).
const maxBody = 1 << 20

// newOrderPath is Boulder's newOrder endpoint.
const newOrderPath = "/acme/new-order"

// Front is the handler; Foreign counts orders answered alreadyReplaced.
type Front struct {
	upstream *url.URL
	proxy    *httputil.ReverseProxy
	own      map[string]bool // authority key IDs (raw bytes as string) of own issuers
	client   *http.Client
	log      *slog.Logger
	Foreign  atomic.Int64
}

// Load reads the config and the issuers' key identifiers.
func Load(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &c, nil
}

// New builds the handler.
func New(c *Config, log *slog.Logger) (*Front, error) {
	u, err := url.Parse(c.Upstream)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("upstream %q: want http://ip:port", c.Upstream)
	}
	f := &Front{upstream: u, own: map[string]bool{}, log: log,
		client: &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	for _, file := range c.Issuers {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("issuers: %w", err)
		}
		for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("issuers: %s: %w", file, err)
			}
			f.own[string(cert.SubjectKeyId)] = true
		}
	}
	if len(f.own) == 0 {
		return nil, errors.New("issuers: no certificate: the front must know the site's own issuers")
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // Boulder builds every URL from Host
			r.SetXForwarded()      // X-Forwarded-Proto: https
			if ip, _, err := net.SplitHostPort(r.In.RemoteAddr); err == nil {
				r.Out.Header.Set("X-Real-IP", ip) // per-IP rate limits see the client
			}
		},
		// A dead WFE looks dead: the client's connection is cut, as when
		// nothing listened (probes and failover count it as refused).
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("upstream", "err", err)
			panic(http.ErrAbortHandler)
		},
	}
	return f, nil
}

// ServeHTTP implements http.Handler.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == newOrderPath {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		r.Body.Close()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if len(body) <= maxBody {
			if aki, ok := replacesAKI(body); ok && !f.own[string(aki)] {
				f.log.Info("newOrder replaces another site's certificate: answered alreadyReplaced", "client", r.RemoteAddr)
				f.alreadyReplaced(w, r)
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	f.proxy.ServeHTTP(w, r)
}

// alreadyReplaced answers RFC 8555 style: a problem document with its
// status, a fresh nonce from the WFE (clients take the next nonce from
// every response), and the directory link.
func (f *Front) alreadyReplaced(w http.ResponseWriter, r *http.Request) {
	f.Foreign.Add(1)
	nonce, err := f.nonce(r.Context(), r.Host)
	if err != nil {
		f.log.Warn("new nonce for alreadyReplaced", "err", err)
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Replay-Nonce", nonce)
	w.Header().Set("Link", fmt.Sprintf(`<https://%s/directory>;rel="index"`, r.Host))
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusConflict)
	json.NewEncoder(w).Encode(map[string]any{
		"type":   "urn:ietf:params:acme:error:alreadyReplaced",
		"detail": "the certificate named in 'replaces' was issued by another site of this CA cluster (the ACME name moved); order again without 'replaces'",
		"status": http.StatusConflict,
	})
}

func (f *Front) nonce(ctx context.Context, host string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, f.upstream.JoinPath("/acme/new-nonce").String(), nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		return "", fmt.Errorf("no Replay-Nonce (HTTP %d)", resp.StatusCode)
	}
	return n, nil
}

// replacesAKI reads the authority key identifier of the certificate a
// newOrder's "replaces" names (RFC 9773: base64url(AKI) "." base64url(serial)),
// from the JWS payload. The signature is the WFE's to check; the front
// only ever refuses, and cannot change what it forwards.
func replacesAKI(body []byte) ([]byte, bool) {
	var jws struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(body, &jws) != nil {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil {
		return nil, false
	}
	var order struct {
		Replaces string `json:"replaces"`
	}
	if json.Unmarshal(payload, &order) != nil || order.Replaces == "" {
		return nil, false
	}
	akiPart, _, ok := strings.Cut(order.Replaces, ".")
	if !ok {
		return nil, false
	}
	aki, err := base64.RawURLEncoding.DecodeString(akiPart)
	if err != nil || len(aki) == 0 {
		return nil, false // malformed: the WFE answers it
	}
	return aki, true
}

// Serve runs the front on c.Listen until ctx ends.
func Serve(ctx context.Context, c *Config, log *slog.Logger) error {
	f, err := New(c, log)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	srv := &http.Server{Addr: c.Listen, Handler: f, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("acme front listening", "addr", c.Listen, "upstream", c.Upstream, "issuers", len(f.own))
	if err := srv.ListenAndServeTLS("", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
