package accounts

import (
	"slices"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
)

// A key's scope is normalized and must lie inside the cluster's names;
// a label must be one line.
func TestEABScopeAndLabel(t *testing.T) {
	spec := cluster.Default([]string{"a"})
	spec.Policy.AllowedNames = []string{"corp.internal", spec.ACME.Zone}
	e := &EAB{Spec: spec}
	got, err := e.Scope([]string{"*.Payments.corp.internal", "payments.corp.internal.", "web." + spec.ACME.Zone})
	if err != nil || !slices.Equal(got, []string{"payments.corp.internal", "web." + spec.ACME.Zone}) {
		t.Errorf("Scope = %v, %v", got, err)
	}
	for in, want := range map[string]string{
		"example.com":        "outside policy.allowedNames",
		"internal":           "outside policy.allowedNames", // wider than the cluster's
		"payments..internal": "not a DNS suffix",
	} {
		if _, err := e.Scope([]string{in}); err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "--scope ") {
			t.Errorf("Scope(%q): %v, want an error about %q naming --scope", in, err, want)
		}
	}
	// Without allowedNames any suffix goes.
	if _, err := (&EAB{Spec: cluster.Default([]string{"a"})}).Scope([]string{"example.com"}); err != nil {
		t.Errorf("no allowedNames: %v", err)
	}
	for _, bad := range []string{"", "  ", "two\nlines", strings.Repeat("x", 201)} {
		if err := validLabel(bad); err == nil || !strings.Contains(err.Error(), "--label") {
			t.Errorf("label %q: %v", bad, err)
		}
	}
	if err := validLabel("payments team"); err != nil {
		t.Error(err)
	}
}
