package healthcheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// accountServer is an ACME server whose newAccount answers with answer
// (status and problem type; 0: the account) for the n-th request, n from 1.
func accountServer(t *testing.T, answer func(n int64) (int, string)) (*Target, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Replay-Nonce", "n"+time.Now().Format("150405.000000000"))
		switch r.URL.Path {
		case "/directory":
			json.NewEncoder(w).Encode(map[string]string{"newNonce": srv.URL + "/nonce", "newAccount": srv.URL + "/account",
				"newOrder": srv.URL + "/order", "revokeCert": srv.URL + "/revoke", "keyChange": srv.URL + "/key"})
		case "/nonce":
			w.WriteHeader(http.StatusOK)
		case "/account":
			status, problem := answer(hits.Add(1))
			if status == 0 {
				w.Header().Set("Location", srv.URL+"/account/1")
				json.NewEncoder(w).Encode(map[string]string{"status": "valid"})
				return
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"type": "urn:ietf:params:acme:error:" + problem, "detail": problem, "status": status})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tg := &Target{Site: "a", DirectoryURL: srv.URL + "/directory", AccountKey: key}
	tg.Roots = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return tg, &hits
}

// A probe fails at the first server error instead of retrying it until
// its deadline (x/crypto's default, which made a CA that cannot sign
// take the whole deadline of every issuance probe); a badNonce is
// retried, as every client does.
func TestProbeFailsFastOnServerErrors(t *testing.T) {
	cases := []struct {
		name     string
		answer   func(n int64) (int, string)
		ok       bool
		hits     int64
		class    string
		problem  string
		httpCode int
	}{
		{"500 serverInternal: one request, failed", func(int64) (int, string) { return 500, "serverInternal" }, false, 1, ClassACME, "urn:ietf:params:acme:error:serverInternal", 500},
		{"503: one request, failed", func(int64) (int, string) { return 503, "serverInternal" }, false, 1, ClassACME, "urn:ietf:params:acme:error:serverInternal", 503},
		{"429 rateLimited: one request, failed", func(int64) (int, string) { return 429, "rateLimited" }, false, 1, ClassACME, "urn:ietf:params:acme:error:rateLimited", 429},
		{"badNonce once: retried, passes", func(n int64) (int, string) {
			if n == 1 {
				return 400, "badNonce"
			}
			return 0, ""
		}, true, 2, "", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg, hits := accountServer(t, tc.answer)
			// A deadline x/crypto's retries (1 s, 2 s, 4 s …) would fill.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r := ProbeAccount(ctx, tg)
			if got := hits.Load(); got != tc.hits {
				t.Errorf("newAccount asked %d times, want %d", got, tc.hits)
			}
			if r.OK != tc.ok {
				t.Fatalf("probe ok %v, want %v: %+v", r.OK, tc.ok, r.Steps)
			}
			if tc.ok {
				return
			}
			f := r.FailedStep()
			if f == nil || f.Name != "account" || f.ErrorClass != tc.class || f.ACMEProblemType != tc.problem || f.HTTPStatus != tc.httpCode {
				t.Errorf("failed step %+v, want account %s %s %d", f, tc.class, tc.problem, tc.httpCode)
			}
		})
	}
}
