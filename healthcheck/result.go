// Package healthcheck probes ACME sites deeply, one site at a time and
// directly (its address, the ACME name as Host/SNI), and records per-step
// timings, error classes and ACME problem types. It never decides failover.
package healthcheck

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// Probe kinds.
const (
	KindDNS        = "dns"
	KindTLS        = "tls"
	KindDirectory  = "directory"
	KindNonce      = "nonce"
	KindAccount    = "account"
	KindIssuance   = "issuance"
	KindCRL        = "crl"
	KindRevocation = "revocation"
	// KindReplication reads the site's account replication; it never
	// votes on failover.
	KindReplication = "replication"
)

// Error classes, coarse enough to alert on and to decide with.
const (
	ClassNone        = ""
	ClassDNS         = "dns"         // name did not resolve, or the answer is wrong
	ClassRefused     = "refused"     // connection refused or reset
	ClassTimeout     = "timeout"     // no answer in time
	ClassTLS         = "tls"         // handshake or certificate verification
	ClassHTTP        = "http"        // unexpected HTTP status
	ClassACME        = "acme"        // an RFC 8555 problem document (see ACMEProblemType)
	ClassProtocol    = "protocol"    // answered, but not what RFC 8555 says
	ClassMismatch    = "mismatch"    // wrong issuer, serial prefix, name, site
	ClassStale       = "stale"       // a CRL past its nextUpdate
	ClassInternal    = "internal"    // the prober itself failed
	ClassCancelled   = "cancelled"   // the probe was stopped
	ClassReplication = "replication" // account replication stopped, unfiltered or lagging
)

// Step is one timed step of a probe.
type Step struct {
	Name            string        `json:"name"`
	Duration        time.Duration `json:"-"`
	OK              bool          `json:"ok"`
	ErrorClass      string        `json:"errorClass,omitempty"`
	ACMEProblemType string        `json:"acmeProblemType,omitempty"`
	HTTPStatus      int           `json:"httpStatus,omitempty"`
	Detail          string        `json:"detail,omitempty"`
}

// MarshalJSON adds the duration in milliseconds.
func (s Step) MarshalJSON() ([]byte, error) {
	type plain Step
	return json.Marshal(struct {
		plain
		DurationMS float64 `json:"durationMs"`
	}{plain(s), float64(s.Duration.Microseconds()) / 1000})
}

// UnmarshalJSON reads what MarshalJSON wrote, duration included (the
// history stores steps this way).
func (s *Step) UnmarshalJSON(b []byte) error {
	type plain Step
	var v struct {
		plain
		DurationMS float64 `json:"durationMs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Step(v.plain)
	s.Duration = time.Duration(v.DurationMS * float64(time.Millisecond))
	return nil
}

// Result is one run of one probe kind against one site.
type Result struct {
	Site    string        `json:"site"`
	Kind    string        `json:"kind"`
	OK      bool          `json:"ok"`
	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"-"`
	Steps   []Step        `json:"steps"`
	// Facts the probe learned: the site the ACME name points to, days of
	// certificate validity left, CRL nextUpdate, revocation delay.
	Facts map[string]string `json:"facts,omitempty"`
	// Confirmation: the run came early, asked for by Scheduler.Recheck
	// (the controller confirming a deep failure), not by the interval.
	Confirmation bool `json:"confirmation,omitempty"`
}

// MarshalJSON adds the elapsed time in milliseconds.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		ElapsedMS float64 `json:"elapsedMs"`
	}{plain(r), float64(r.Elapsed.Microseconds()) / 1000})
}

// FailedStep is the first failed step, or nil.
func (r Result) FailedStep() *Step {
	for i := range r.Steps {
		if !r.Steps[i].OK {
			return &r.Steps[i]
		}
	}
	return nil
}

// recorder builds a Result step by step.
type recorder struct {
	res  Result
	mark time.Time
}

func newRecorder(site, kind string) *recorder {
	now := time.Now()
	return &recorder{res: Result{Site: site, Kind: kind, Started: now, OK: true}, mark: now}
}

// step records a finished step; err nil means it passed.
func (r *recorder) step(name string, err error) error {
	now := time.Now()
	s := Step{Name: name, Duration: now.Sub(r.mark), OK: err == nil}
	r.mark = now
	if err != nil {
		s.ErrorClass, s.ACMEProblemType, s.HTTPStatus = Classify(err)
		s.Detail = err.Error()
		r.res.OK = false
	}
	r.res.Steps = append(r.res.Steps, s)
	return err
}

func (r *recorder) fact(k, v string) {
	if r.res.Facts == nil {
		r.res.Facts = map[string]string{}
	}
	r.res.Facts[k] = v
}

func (r *recorder) done() Result {
	r.res.Elapsed = time.Since(r.res.Started)
	if len(r.res.Steps) == 0 {
		r.res.OK = false
	}
	return r.res
}

// probeError is a failure the probe itself diagnosed, with its class
// (mismatch: a wrong but well-formed answer; protocol: not what RFC 8555
// says; stale: out of date).
type probeError struct {
	class string
	msg   string
}

func (e probeError) Error() string { return e.msg }

type httpStatusError struct {
	status int
	msg    string
}

func (e httpStatusError) Error() string { return e.msg }

// Classify maps an error to an error class, the ACME problem type (for
// ClassACME) and the HTTP status when known.
func Classify(err error) (class, problemType string, status int) {
	if err == nil {
		return ClassNone, "", 0
	}
	var ae *acme.Error
	if errors.As(err, &ae) {
		return ClassACME, ae.ProblemType, ae.StatusCode
	}
	var ce *acme.AuthorizationError
	if errors.As(err, &ce) && len(ce.Errors) > 0 {
		var inner *acme.Error
		if errors.As(ce.Errors[0], &inner) {
			return ClassACME, inner.ProblemType, inner.StatusCode
		}
	}
	var oe *acme.OrderError
	if errors.As(err, &oe) {
		return ClassACME, "", 0
	}
	var ue *rfc2136.UpdateError
	if errors.As(err, &ue) {
		return ClassDNS, "", 0
	}
	var pe probeError
	if errors.As(err, &pe) {
		return pe.class, "", 0
	}
	var he httpStatusError
	if errors.As(err, &he) {
		return ClassHTTP, "", he.status
	}
	if errors.Is(err, context.Canceled) {
		return ClassCancelled, "", 0
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ClassTimeout, "", 0
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout, "", 0
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return ClassRefused, "", 0
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return ClassDNS, "", 0
	}
	var ua x509.UnknownAuthorityError
	var he2 x509.HostnameError
	var ie x509.CertificateInvalidError
	if errors.As(err, &ua) || errors.As(err, &he2) || errors.As(err, &ie) || strings.Contains(err.Error(), "tls:") {
		return ClassTLS, "", 0
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) && strings.Contains(urlErr.Err.Error(), "EOF") {
		return ClassRefused, "", 0
	}
	return ClassInternal, "", 0
}
