// Package namescope matches DNS names against suffix scopes: the
// cluster's policy.allowedNames and the scope of an External Account
// Binding key (docs/authority.md). A scope entry "payments.corp.internal"
// covers that name and every name under it; "*.payments.corp.internal"
// is accepted as the same entry (written that way because teams think
// of it as a wildcard). The ACME front, the spec's validation and
// `cairn accounts eab create` share these rules.
package namescope

import (
	"fmt"
	"regexp"
	"strings"
)

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Normalize turns one scope entry into its canonical form: lower case,
// no trailing dot, no leading "*.". It refuses anything but a DNS name
// (an entry that is not a name can match nothing, and a typo must not
// silently lock a team out or let it in).
func Normalize(entry string) (string, error) {
	s := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(entry)), ".")
	s = strings.TrimPrefix(s, "*.")
	if s == "" {
		return "", fmt.Errorf("%q is empty; use a DNS suffix such as payments.corp.internal", entry)
	}
	if len(s) > 253 {
		return "", fmt.Errorf("%.40q… is longer than a DNS name (253)", entry)
	}
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return "", fmt.Errorf("%q is not a DNS suffix (labels of a-z, 0-9 and '-'; at most a leading '*.'), e.g. payments.corp.internal", entry)
		}
	}
	return s, nil
}

// NormalizeAll normalizes every entry, without duplicates, in order.
func NormalizeAll(entries []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, e := range entries {
		s, err := Normalize(e)
		if err != nil {
			return nil, err
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// Covers reports whether a DNS identifier (a wildcard order name
// "*.x" stands for x's subtree) lies inside one of the normalized
// entries. An empty scope covers nothing: callers decide what "no
// scope" means.
func Covers(scope []string, name string) bool {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	n = strings.TrimPrefix(n, "*.")
	if n == "" {
		return false
	}
	for _, s := range scope {
		if n == s || strings.HasSuffix(n, "."+s) {
			return true
		}
	}
	return false
}

// Within reports whether every name the entry covers is covered by
// scope (an EAB key's scope must lie inside the cluster's allowedNames,
// or the key could never order anything there).
func Within(scope []string, entry string) bool { return Covers(scope, entry) }

// String is the scope as error messages and listings show it.
func String(scope []string) string { return strings.Join(scope, ", ") }

// Join and Split are the scope's form in the database (one column).
func Join(scope []string) string { return strings.Join(scope, " ") }

// Split reads the database form back.
func Split(s string) []string { return strings.Fields(s) }
