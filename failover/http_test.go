package failover

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/healthcheck"
)

// A stranger who reaches the controller's port reads the status and the
// page, never the revocation journal (serials, requesters, errors), and
// commands nothing: each of those needs the operator's token.
func TestOperatorTokenGuardsCommandsAndTheJournal(t *testing.T) {
	r := newRig(t, nil)
	h := r.c.Handler(r.reg, "s3cret-token")
	call := func(method, path, token string) int {
		req := httptest.NewRequest(method, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	for _, c := range []struct {
		method, path string
	}{
		{http.MethodGet, "/api/revocations"},
		{http.MethodPost, "/api/move?to=b"},
		{http.MethodPost, "/api/drain?site=b"},
		{http.MethodPost, "/api/undrain?site=b"},
		{http.MethodPost, "/api/revoke?serial=01&reason=superseded"},
	} {
		for _, token := range []string{"", "wrong", "s3cret-toke"} {
			if got := call(c.method, c.path, token); got != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: HTTP %d, want 401", c.method, c.path, token, got)
			}
		}
	}
	if got := call(http.MethodGet, "/api/revocations", "s3cret-token"); got != http.StatusOK {
		t.Errorf("the operator reading the journal: HTTP %d", got)
	}
	if got := call(http.MethodGet, "/api/status", ""); got != http.StatusOK {
		t.Errorf("status without a token: HTTP %d, want 200", got)
	}
}

// A replica's last error quotes SQL and rows (account contacts): the
// status without the operator's token and the status page say only that
// replication is broken; with the token the API gives the detail.
func TestReplicationDetailsNeedTheToken(t *testing.T) {
	r := newRig(t, nil)
	r.healthy("a", "b")
	secret := "Could not execute Update_rows_v1 event on table boulder_sa.registrations; contact mailto:ops@example.net"
	r.c.Sink(healthcheck.Result{Site: "a", Kind: healthcheck.KindReplication, Started: r.now,
		Steps: []healthcheck.Step{{Name: "from b", ErrorClass: healthcheck.ClassReplication, Detail: secret}}})
	r.step()
	h := r.c.Handler(r.reg, "s3cret-token")
	get := func(path, token string) string {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d", path, w.Code)
		}
		return w.Body.String()
	}
	for _, c := range []struct{ path, token string }{{"/api/status", ""}, {"/api/status", "wrong"}, {"/", ""}, {"/", "s3cret-token"}} {
		body := get(c.path, c.token)
		if strings.Contains(body, "ops@example.net") {
			t.Errorf("GET %s (token %q) shows the replication error", c.path, c.token)
		}
		if !strings.Contains(body, "operator token") {
			t.Errorf("GET %s (token %q) does not say where the details are", c.path, c.token)
		}
	}
	var st Status
	if err := json.Unmarshal([]byte(get("/api/status", "s3cret-token")), &st); err != nil || st.Sites[0].Accounts == nil || st.Sites[0].Accounts.Detail != secret {
		t.Errorf("the operator's status: %v %+v", err, st.Sites[0].Accounts)
	}
}
