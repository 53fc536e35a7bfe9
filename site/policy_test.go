package site

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
)

// With private suffixes and allowed networks, every Boulder process gets
// the suffixes, only the VA and remote VAs the networks, every site
// offers the spec's challenge types, and the CA skips the two TLD lints;
// without them (the golden files) nothing of this is rendered.
func TestRenderPolicy(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	spec.Policy.PrivateSuffixes = []string{"internal", "corp"}
	spec.Validation = cluster.Validation{AllowedNetworks: []string{"10.0.0.0/8", "fd00::/8"}}
	spec.ApplyDefaults()
	pki := newSoftPKI(t, spec)
	for i, site := range spec.Sites {
		out := t.TempDir()
		b := render(t, spec, pki, i, out)
		validators := 0
		for _, p := range b.Processes {
			if p.Program != "boulder" {
				if slices.ContainsFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, "CAIRN_") }) {
					t.Errorf("site %s: %s (not Boulder) has %v", site.Name, p.Name, p.Env)
				}
				continue
			}
			if !slices.Contains(p.Env, "CAIRN_PRIVATE_SUFFIXES=internal,corp") {
				t.Errorf("site %s: %s env %v lacks the private suffixes", site.Name, p.Name, p.Env)
			}
			isVA := p.Args[0] == "boulder-va" || p.Args[0] == "remoteva"
			if isVA {
				validators++
			}
			if got := slices.Contains(p.Env, "CAIRN_VALIDATION_ALLOWED_NETWORKS=10.0.0.0/8,fd00::/8"); got != isVA {
				t.Errorf("site %s: %s has the allowed networks: %v, want %v", site.Name, p.Name, got, isVA)
			}
		}
		if validators != 4 {
			t.Errorf("site %s: %d VAs and remote VAs, want 4", site.Name, validators)
		}
		var ra struct {
			PA struct{ Challenges map[string]bool }
		}
		readJSON(t, filepath.Join(out, "etc", "ra.json"), &ra)
		if want := map[string]bool{"dns-01": true, "http-01": true, "tls-alpn-01": true}; !maps.Equal(ra.PA.Challenges, want) {
			t.Errorf("site %s: RA challenges %v, want %v", site.Name, ra.PA.Challenges, want)
		}
		var ca struct {
			CA struct {
				Issuance struct {
					CertProfiles map[string]struct{ IgnoredLints []string }
				}
			}
		}
		readJSON(t, filepath.Join(out, "etc", "ca.json"), &ca)
		for name, prof := range ca.CA.Issuance.CertProfiles {
			if !slices.Contains(prof.IgnoredLints, "e_dnsname_not_valid_tld") {
				t.Errorf("site %s: profile %s lints names under private suffixes: %v", site.Name, name, prof.IgnoredLints)
			}
		}
	}
	// Boulder's validators accept the configs (cairn validate runs this).
	if err := Check(spec); err != nil {
		t.Fatal(err)
	}
}
