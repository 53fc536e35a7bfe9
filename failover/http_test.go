package failover

import (
	"net/http"
	"net/http/httptest"
	"testing"
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
