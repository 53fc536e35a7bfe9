package namescope

import (
	"slices"
	"testing"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"payments.corp.internal":   "payments.corp.internal",
		"*.payments.corp.internal": "payments.corp.internal",
		"Payments.Corp.Internal.":  "payments.corp.internal",
		" internal ":               "internal",
		"*.xn--bcher-kva.example":  "xn--bcher-kva.example",
	} {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "*.", "*", "a..b", "-a.b", "a_b.c", "*.*.a", "a.*.b", "10.0.0.0/8", "a b"} {
		if got, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", bad, got)
		}
	}
	all, err := NormalizeAll([]string{"*.a.x", "a.x", "B.x"})
	if err != nil || !slices.Equal(all, []string{"a.x", "b.x"}) {
		t.Errorf("NormalizeAll = %v, %v", all, err)
	}
}

func TestCovers(t *testing.T) {
	scope := []string{"payments.corp.internal", "ops.internal"}
	for name, want := range map[string]bool{
		"payments.corp.internal":        true,
		"web.payments.corp.internal":    true,
		"a.b.payments.corp.internal":    true,
		"*.payments.corp.internal":      true,
		"WEB.Payments.corp.internal.":   true,
		"ops.internal":                  true,
		"web.corp.internal":             false,
		"corp.internal":                 false,
		"xpayments.corp.internal":       false, // a suffix of labels, not of bytes
		"payments.corp.internal.evil.x": false,
		"*.corp.internal":               false,
		"":                              false,
	} {
		if got := Covers(scope, name); got != want {
			t.Errorf("Covers(%v, %q) = %v, want %v", scope, name, got, want)
		}
	}
	if Covers(nil, "a.b") {
		t.Error("an empty scope covers a name")
	}
	if !Within([]string{"corp.internal"}, "payments.corp.internal") || Within([]string{"payments.corp.internal"}, "corp.internal") {
		t.Error("Within")
	}
}
