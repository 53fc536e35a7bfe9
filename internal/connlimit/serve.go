package connlimit

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Operator listeners (the controller's status page and API, `probe
// --watch`, the fronts' metrics) answer people and Prometheus, not crowds:
// small caps, and deadlines on every phase, so a stranger who reaches the
// port can hold at most OperatorPerSource connections for at most
// OperatorHeaderTimeout each before a request.
const (
	OperatorTotal         = 256
	OperatorPerSource     = 32
	OperatorHeaderTimeout = 5 * time.Second
)

// Server is an operator listener's HTTP server and its counters.
type Server struct {
	*http.Server
	Stats *Stats
}

// ServeHTTP listens on addr and serves h with the operator caps and
// deadlines until the returned server is closed. what names the listener
// in errors (e.g. "failover.listen").
func ServeHTTP(addr, what string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, addr, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: OperatorHeaderTimeout, ReadTimeout: 15 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 64 << 10}
	capped := New(ln, OperatorTotal, OperatorPerSource, log)
	go srv.Serve(capped)
	return &Server{Server: srv, Stats: capped.Stats}, nil
}
