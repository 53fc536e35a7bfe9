// Package agent is the site agent: the one process that holds a site's
// admin credential for its RA and SA, and offers the failover controller
// exactly what it needs at a site — revoke a certificate of this site,
// block a key, publish the CRLs now, say which site it is, and (unless
// the cluster's backups are off) stream a backup of the site's database —
// over HTTPS with mutual TLS on the site's management port (PortAgent).
// Nothing it offers creates an order or finalizes, and the controller's
// certificate is accepted by the agent alone (the RA and SA do not list
// it), so a stolen controller credential cannot issue; it can read the
// site's database through a backup (accounts, orders, certificates: no
// key).
//
// Only a client certificate of the site's internal CA naming one of
// Config.ClientNames (controller.cairn) is served; a serial of another
// site's prefix, an unknown reason or a malformed key hash is refused
// before anything reaches Boulder.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/connlimit"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Port is the agent's TCP port on the site's management address.
const Port = 9480

// ServerName is the agent's name in its certificate; ControllerName the
// name the controller's client certificate carries.
const (
	ServerName     = "agent.cairn"
	ControllerName = "controller.cairn"
)

// Reasons are the CRL reasons the agent passes on (the ones Boulder's
// admin revocation takes), by name.
var Reasons = []string{"unspecified", "keyCompromise", "superseded", "cessationOfOperation", "privilegeWithdrawn"}

// Config is etc/agent.json of a site bundle.
type Config struct {
	Site   string `json:"site"`
	Listen string `json:"listen"` // management address and Port
	// CertFile/KeyFile: the agent's certificate (ServerName) from the
	// site's internal CA; ClientCAFile: that CA, the only issuer of
	// client certificates it accepts; ClientNames: the DNS names one of
	// which a client certificate must carry.
	CertFile     string   `json:"certFile"`
	KeyFile      string   `json:"keyFile"`
	ClientCAFile string   `json:"clientCAFile"`
	ClientNames  []string `json:"clientNames"`
	// SerialPrefix is the site's serial prefix: the first byte of every
	// serial it issued, the only ones it may revoke.
	SerialPrefix int `json:"serialPrefix"`
	// AdminConfig is the bundle's admin.json (the site's own admin
	// credential for the RA and SA); Bundle the bundle's directory.
	AdminConfig string `json:"adminConfig"`
	Bundle      string `json:"bundle"`
	// Backup: the controller may take backups of the site's database
	// (the spec's backup.off is false).
	Backup bool `json:"backup,omitempty"`
}

// Load reads a config.
func Load(file string) (*Config, error) {
	var c Config
	if err := fsutil.ReadJSON(file, &c); err != nil {
		return nil, err
	}
	if c.Site == "" || c.Listen == "" || c.ClientCAFile == "" || len(c.ClientNames) == 0 || c.SerialPrefix <= 0 || c.SerialPrefix > 0x7f {
		return nil, fmt.Errorf("%s: site, listen, clientCAFile, clientNames and serialPrefix (1–127) are required", file)
	}
	return &c, nil
}

// Backend does the work at the site: Boulder's admin operations through
// the site's own credential, and the CRL updater. Revoke returns
// ErrAlreadyRevoked or ErrNotFound (wrapped) when Boulder says so.
type Backend interface {
	Revoke(ctx context.Context, serial, reason string) error
	BlockKey(ctx context.Context, spkiHash, comment string) error
	PublishCRLs(ctx context.Context) error
	// Backup writes a consistent backup of the site's database to w
	// (hostrun.BackupDB's format).
	Backup(ctx context.Context, w io.Writer) error
}

// BackupTrailer is the HTTP trailer that ends a backup's answer: "ok"
// when the stream is complete, else why it is not (the status line was
// sent before the backup ran).
const BackupTrailer = "Cairn-Backup"

// BackupComplete checks, once resp's body was read to its end, that the
// agent ended the backup stream with BackupTrailer "ok": a backup cut
// short is never taken for a whole one.
func BackupComplete(resp *http.Response) error {
	switch got := resp.Trailer.Get(BackupTrailer); got {
	case "ok":
		return nil
	case "":
		return errors.New("the backup stream ended without the agent's trailer: cut short")
	default:
		return errors.New(got)
	}
}

// Errors a Backend reports (revocation's errors are these).
var (
	ErrAlreadyRevoked = errors.New("already revoked")
	ErrNotFound       = errors.New("the issuing site has no certificate with this serial")
)

// Request is what the controller sends (the fields each call uses).
type Request struct {
	Serial   string `json:"serial,omitempty"`
	Reason   string `json:"reason,omitempty"`
	SPKIHash string `json:"spkiHash,omitempty"`
	Comment  string `json:"comment,omitempty"`
}

// Answer is what the agent says.
type Answer struct {
	Site   string `json:"site"`
	Result string `json:"result,omitempty"` // revoked, alreadyRevoked, blocked, published
	Error  string `json:"error,omitempty"`
}

// Handler serves the agent's calls for c with b; the TLS layer (Serve)
// has checked the caller.
func Handler(c *Config, b Backend, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, status int, a Answer) {
		a.Site = c.Site
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(a)
	}
	read := func(w http.ResponseWriter, r *http.Request) (Request, bool) {
		var req Request
		dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			answer(w, http.StatusBadRequest, Answer{Error: "the body is not a request: " + cluster.FirstLine(err.Error())})
			return req, false
		}
		return req, true
	}
	failed := func(w http.ResponseWriter, what string, err error) {
		log.Warn(what+" failed", "err", err)
		answer(w, http.StatusBadGateway, Answer{Error: cluster.FirstLine(err.Error())})
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		answer(w, http.StatusOK, Answer{Result: "ok"})
	})
	mux.HandleFunc("POST /v1/revoke", func(w http.ResponseWriter, r *http.Request) {
		req, ok := read(w, r)
		if !ok {
			return
		}
		if err := checkSerial(req.Serial, c.SerialPrefix); err != nil {
			answer(w, http.StatusForbidden, Answer{Error: err.Error()})
			return
		}
		if !slices.Contains(Reasons, req.Reason) {
			answer(w, http.StatusBadRequest, Answer{Error: fmt.Sprintf("reason %q: use one of %s", cluster.Excerpt(req.Reason), strings.Join(Reasons, ", "))})
			return
		}
		err := b.Revoke(r.Context(), req.Serial, req.Reason)
		switch {
		case err == nil:
			log.Info("revoked", "serial", req.Serial, "reason", req.Reason, "by", caller(r))
			answer(w, http.StatusOK, Answer{Result: "revoked"})
		case errors.Is(err, ErrAlreadyRevoked):
			answer(w, http.StatusOK, Answer{Result: "alreadyRevoked"})
		case errors.Is(err, ErrNotFound):
			answer(w, http.StatusNotFound, Answer{Error: cluster.FirstLine(err.Error())})
		default:
			failed(w, "revoke", err)
		}
	})
	mux.HandleFunc("POST /v1/block-key", func(w http.ResponseWriter, r *http.Request) {
		req, ok := read(w, r)
		if !ok {
			return
		}
		if h, err := hex.DecodeString(req.SPKIHash); err != nil || len(h) != 32 {
			answer(w, http.StatusBadRequest, Answer{Error: fmt.Sprintf("spkiHash %q: want the SHA-256 of a public key, 64 hex digits", cluster.Excerpt(req.SPKIHash))})
			return
		}
		if len(req.Comment) > 200 || strings.ContainsFunc(req.Comment, func(r rune) bool { return r < ' ' }) {
			answer(w, http.StatusBadRequest, Answer{Error: "comment: at most 200 characters on one line"})
			return
		}
		if err := b.BlockKey(r.Context(), strings.ToLower(req.SPKIHash), req.Comment); err != nil {
			failed(w, "block-key", err)
			return
		}
		log.Info("key blocked", "spkiHash", req.SPKIHash, "by", caller(r))
		answer(w, http.StatusOK, Answer{Result: "blocked"})
	})
	mux.HandleFunc("POST /v1/backup", backupHandler(c, b, log, answer))
	mux.HandleFunc("POST /v1/publish-crls", func(w http.ResponseWriter, r *http.Request) {
		if err := b.PublishCRLs(r.Context()); err != nil {
			failed(w, "publish-crls", err)
			return
		}
		log.Info("CRLs published", "by", caller(r))
		answer(w, http.StatusOK, Answer{Result: "published"})
	})
	return mux
}

// backupHandler streams a backup of the site's database, one at a time,
// ended by BackupTrailer; 403 when the cluster's backups are off.
func backupHandler(c *Config, b Backend, log *slog.Logger, answer func(http.ResponseWriter, int, Answer)) http.HandlerFunc {
	var backingUp sync.Mutex
	return func(w http.ResponseWriter, r *http.Request) {
		if !c.Backup {
			answer(w, http.StatusForbidden, Answer{Error: "backups are off for this cluster (backup.off in cairn.yaml)"})
			return
		}
		// One at a time: a backup reads the whole database.
		if !backingUp.TryLock() {
			answer(w, http.StatusConflict, Answer{Error: "a backup is already running at this site"})
			return
		}
		defer backingUp.Unlock()
		w.Header().Set("Trailer", BackupTrailer)
		w.Header().Set("Content-Type", "application/gzip")
		w.WriteHeader(http.StatusOK)
		start := time.Now()
		if err := b.Backup(r.Context(), w); err != nil {
			log.Warn("backup failed", "err", err, "by", caller(r))
			w.Header().Set(BackupTrailer, "failed: "+cluster.FirstLine(err.Error()))
			return
		}
		w.Header().Set(BackupTrailer, "ok")
		log.Info("backup sent", "seconds", time.Since(start).Round(time.Millisecond).Seconds(), "by", caller(r))
	}
}

// checkSerial accepts Boulder's form of a serial of this site: 36 hex
// digits whose first byte is the site's prefix.
func checkSerial(serial string, prefix int) error {
	b, err := hex.DecodeString(serial)
	if err != nil || len(b) != 18 || serial != strings.ToLower(serial) {
		return fmt.Errorf("serial %q: want 36 lower-case hex digits (Boulder's form)", cluster.Excerpt(serial))
	}
	if int(b[0]) != prefix {
		return fmt.Errorf("serial %s starts with %02x, not this site's prefix %02x: only the issuing site revokes it", serial, b[0], prefix)
	}
	return nil
}

func caller(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0].Subject.CommonName
	}
	return "?"
}

// TLSConfig is the agent's TLS: its certificate, and client certificates
// of the CA in c.ClientCAFile naming one of c.ClientNames, required.
func TLSConfig(c *Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certFile/keyFile: %w", err)
	}
	ca, err := os.ReadFile(c.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("clientCAFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("clientCAFile %s: no PEM certificate", c.ClientCAFile)
	}
	names := c.ClientNames
	return &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			for _, n := range cs.PeerCertificates[0].DNSNames {
				if slices.Contains(names, n) {
					return nil
				}
			}
			return fmt.Errorf("client certificate %q names none of %v", cs.PeerCertificates[0].Subject.CommonName, names)
		},
	}, nil
}

// Limits of the agent's listener: few callers (the controllers), small
// requests, Boulder calls of seconds (a CRL run of up to a minute).
const (
	maxConns          = 64
	maxConnsPerSource = 16
	handshakeTimeout  = 5 * time.Second
	writeTimeout      = 3 * time.Minute
)

// Serve runs the agent until ctx ends.
func Serve(ctx context.Context, c *Config, b Backend, log *slog.Logger) error {
	tc, err := TLSConfig(c)
	if err != nil {
		return err
	}
	inner, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	l := tls.NewListener(connlimit.New(inner, maxConns, maxConnsPerSource, log), tc)
	srv := &http.Server{Handler: Handler(c, b, log), ReadHeaderTimeout: handshakeTimeout, ReadTimeout: 10 * time.Second,
		WriteTimeout: writeTimeout, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("site agent listening", "site", c.Site, "addr", c.Listen, "clients", c.ClientNames)
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
