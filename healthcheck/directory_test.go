package healthcheck

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A directory server advertising profiles (nil: no meta.profiles).
func directoryServer(t *testing.T, profiles map[string]any) *Target {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dir := map[string]any{"newNonce": "n", "newAccount": "a", "newOrder": "o", "revokeCert": "r", "keyChange": "k"}
		if profiles != nil {
			dir["meta"] = map[string]any{"profiles": profiles}
		}
		json.NewEncoder(w).Encode(dir)
	}))
	t.Cleanup(srv.Close)
	tg := &Target{Site: "a", DirectoryURL: srv.URL + "/directory"}
	tg.Roots = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return tg
}

// The directory probe reports the profiles a site advertises, and fails
// its "profiles" step, with both lists, when they are not the spec's.
func TestDirectoryProfiles(t *testing.T) {
	spec := map[string]string{"classic": "90 days", "shortlived": "7 days"}
	cases := []struct {
		name     string
		site     map[string]any
		want     map[string]string // the target's (spec's) profiles; nil: not compared
		fact     string
		failWith string // "" : passes
	}{
		{"as the spec", map[string]any{"shortlived": "7 days", "classic": "90 days"}, spec, "classic,shortlived", ""},
		{"one missing (a site not yet re-rendered)", map[string]any{"classic": "90 days"}, spec, "classic",
			"profiles differ from the spec: site has [classic], spec has [classic,shortlived]"},
		{"none advertised", nil, spec, "(none)", "profiles differ from the spec: site has [(none)], spec has [classic,shortlived]"},
		{"a description changed", map[string]any{"classic": "90 days", "shortlived": "6 days"}, spec, "classic,shortlived",
			`profile descriptions differ from the spec: site has [classic="90 days" shortlived="6 days"], spec has [classic="90 days" shortlived="7 days"]`},
		{"a name no Boulder would take", map[string]any{"classic": "90 days", "a b\n": 7}, spec, `"a b\n",classic`, `site has ["a b\n",classic]`},
		{"a URL target: reported, not compared", map[string]any{"tlsserver": "x"}, nil, "tlsserver", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := directoryServer(t, tc.site)
			tg.Profiles = tc.want
			r := ProbeDirectory(context.Background(), tg)
			if got := r.Facts[FactProfiles]; got != tc.fact {
				t.Errorf("fact %q, want %q", got, tc.fact)
			}
			f := r.FailedStep()
			switch {
			case tc.failWith == "" && !r.OK:
				t.Errorf("failed: %+v", f)
			case tc.failWith != "" && (r.OK || f == nil || f.Name != StepProfiles || f.ErrorClass != ClassMismatch || !strings.Contains(f.Detail, tc.failWith)):
				t.Errorf("result %+v, want step %s failing with %q", r, StepProfiles, tc.failWith)
			}
			if hasStep := len(r.Steps) == 2; hasStep != (tc.want != nil) {
				t.Errorf("steps %+v", r.Steps)
			}
		})
	}
}
