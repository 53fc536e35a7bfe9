// Package httpfront is the small HTTP server in front of what production
// deployments publish with their own web servers: a site's CRLs (proxied
// from its S3 store, and every other site's, mirrored) and issuer
// certificates, and the cluster's root certificate and CRL. It runs in
// cairn-front, the small binary of the processes that face clients.
package httpfront

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/internal/connlimit"
)

// Config is a front's configuration (etc/http-front.json of a bundle).
type Config struct {
	Listen string            `json:"listen"`
	Static map[string]string `json:"static"` // URL prefix -> directory
	Proxy  map[string]string `json:"proxy"`  // URL prefix -> upstream base URL
	// Mirror, on a site's CRL front: every other site's CRLs, copied.
	Mirror *CRLMirror `json:"mirror,omitempty"`
}

// Serve runs the front until ctx ends.
func Serve(ctx context.Context, configFile string, log *slog.Logger) error {
	b, err := os.ReadFile(configFile)
	if err != nil {
		return err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", configFile, err)
	}
	h, err := cfg.handler()
	if err != nil {
		return err
	}
	// A public listener: deadlines on every phase, caps on connections.
	srv := &http.Server{Addr: cfg.Listen, Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	inner, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	l := connlimit.New(inner, 0, 0, log)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if cfg.Mirror != nil {
		go cfg.Mirror.Run(ctx, log)
	}
	log.Info("http front listening", "addr", cfg.Listen)
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (cfg Config) handler() (http.Handler, error) {
	mux := http.NewServeMux()
	prefixes := func(m map[string]string) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}
	for _, prefix := range prefixes(cfg.Static) {
		dir := cfg.Static[prefix]
		fs := http.StripPrefix(prefix, http.FileServer(http.Dir(dir)))
		mux.Handle(prefix, readOnly(fs))
	}
	for _, prefix := range prefixes(cfg.Proxy) {
		u, err := url.Parse(cfg.Proxy[prefix])
		if err != nil {
			return nil, fmt.Errorf("proxy %s: %w", prefix, err)
		}
		// Path kept as is: crl-storer writes /<bucket>/<nameID>/<shard>.crl.
		var h http.Handler = httputil.NewSingleHostReverseProxy(u)
		if cfg.Mirror != nil && prefix == "/"+cfg.Mirror.Bucket+"/" {
			h = cfg.Mirror.handler(h)
		}
		mux.Handle(prefix, readOnly(h))
	}
	return mux, nil
}

// readOnly refuses everything but GET and HEAD: the front publishes.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		h.ServeHTTP(w, r)
	})
}
