package site

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/rfc2136"
)

func TestCheckClientName(t *testing.T) {
	spec := cluster.Default([]string{"a"})
	zone := spec.ACME.Zone
	for _, ok := range []string{"host." + zone, "a-b.c." + zone, zone} {
		if err := CheckClientName(spec, ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, says := range map[string]string{
		"*.host." + zone:                 "without \"*.\"",
		"_acme-challenge.host." + zone:   "without \"_acme-challenge.\"",
		"host.example.org":               "not in the cluster zone",
		"x" + zone:                       "not in the cluster zone",
		"Host." + zone:                   "lower-case",
		"-h." + zone:                     "lower-case",
		"a..b." + zone:                   "lower-case",
		"../../etc/passwd." + zone:       "lower-case",
		strings.Repeat("a.", 120) + zone: "too long",
	} {
		err := CheckClientName(spec, bad)
		if err == nil || !strings.Contains(err.Error(), says) || !strings.HasPrefix(err.Error(), bad+": ") {
			t.Errorf("%s: want an error saying %q, got %v", bad, says, err)
		}
	}
}

// The cluster rendering grants each client key its own record only, in
// BIND and in the PowerDNS policy, and marks the primary changed exactly
// when a key comes or goes.
func TestClientKeysRendered(t *testing.T) {
	spec := cluster.Default([]string{"a"})
	spec.Dir = t.TempDir()
	zone := spec.ACME.Zone
	render := func() *ClusterBundle {
		t.Helper()
		cb, err := RenderCluster(ClusterOptions{Spec: spec, Out: filepath.Join(spec.Dir, "cluster"), PublicDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return cb
	}
	first := render()
	if !slices.Contains(first.Changed, "dns-primary") || first.Processes[0].Name != PolicyProcess || first.Processes[1].Name != "dns-primary" {
		t.Fatalf("first render: changed %v, processes start with %s", first.Changed, first.Processes[0].Name)
	}
	if got := render().Changed; len(got) != 0 {
		t.Fatalf("a render that changes nothing marks %v changed", got)
	}
	k, err := AddClientKey(spec, "host."+zone)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(k.File); err != nil || fi.Mode().Perm() != 0o600 || k.Key.Name != "host."+zone {
		t.Fatalf("key file %s: %v %v, key %q", k.File, fi.Mode(), err, k.Key.Name)
	}
	if _, err := AddClientKey(spec, "host."+zone); err == nil || !strings.Contains(err.Error(), "a key exists") {
		t.Fatalf("adding the key twice: %v", err)
	}
	cb := render()
	if !slices.Equal(cb.Changed, []string{PolicyProcess, "dns-primary"}) {
		t.Fatalf("a new key changed %v", cb.Changed)
	}
	named, _ := os.ReadFile(filepath.Join(spec.Dir, "cluster", "secrets", "named.conf"))
	for _, want := range []string{
		`key "host.` + zone + `" { algorithm hmac-sha256; secret "` + k.Key.Secret + `"; };`,
		`grant "host.` + zone + `" name _acme-challenge.host.` + zone + `. TXT;`,
		`grant "local:update-policy.sock" external * TXT;`,
	} {
		if !strings.Contains(string(named), want) {
			t.Errorf("named.conf lacks %s:\n%s", want, named)
		}
	}
	// The shared key has no grant of its own in BIND: only the policy
	// server allows it anything.
	if strings.Contains(string(named), `grant "`+spec.Name+`-clients"`) {
		t.Errorf("named.conf grants the shared key directly:\n%s", named)
	}
	var args []string
	for _, p := range cb.Processes {
		if p.Name == PolicyProcess {
			args = p.Args
		}
	}
	if !slices.Contains(args, zone) || !slices.Contains(args, spec.Name+"-clients") || !strings.HasSuffix(args[3], "/var/bind/update-policy.sock") {
		t.Errorf("policy server args %v", args)
	}
	r := &clusterRender{spec: spec, clients: []ClientKey{k}}
	r.cli.Name = spec.Name + "-clients"
	lua := r.updatePolicy()
	if !strings.Contains(lua, `["host.`+zone+`."] = "_acme-challenge.host.`+zone+`."`) {
		t.Errorf("the PowerDNS policy lacks the client's entry:\n%s", lua)
	}
	if err := RemoveClientKey(spec, "host."+zone); err != nil {
		t.Fatal(err)
	}
	if got := render().Changed; !slices.Contains(got, "dns-primary") {
		t.Fatalf("removing a key changed %v", got)
	}
	named, _ = os.ReadFile(filepath.Join(spec.Dir, "cluster", "secrets", "named.conf"))
	if strings.Contains(string(named), "host."+zone) {
		t.Errorf("a removed key is still in named.conf")
	}
	// A key file not named after its key is refused, not granted.
	os.WriteFile(filepath.Join(ClientKeysDir(spec), "other."+zone+".key"), []byte("key \"x\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n"), 0o600)
	if _, err := RenderCluster(ClusterOptions{Spec: spec, Out: filepath.Join(spec.Dir, "cluster"), PublicDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not \"other.") {
		t.Fatalf("a misnamed key file: %v", err)
	}
}

// A bundle for hosts names the policy server's socket under /run (its
// unit's RuntimeDirectory; each unit's var/ is its own there).
func TestPolicySocketOnHosts(t *testing.T) {
	spec := cluster.Default([]string{"a"})
	spec.Dir = t.TempDir()
	out := t.TempDir()
	cb, err := RenderCluster(ClusterOptions{Spec: spec, Out: out, Root: "/opt/cairn/cluster"})
	if err != nil {
		t.Fatal(err)
	}
	named, _ := os.ReadFile(filepath.Join(out, "secrets", "named.conf"))
	if want := `grant "local:` + HostPolicySocket + `" external * TXT;`; !strings.Contains(string(named), want) {
		t.Errorf("named.conf lacks %s", want)
	}
	if p := cb.Processes[0]; p.Name != PolicyProcess || !slices.Contains(p.Args, HostPolicySocket) || p.Ready != "unix:"+HostPolicySocket {
		t.Errorf("policy process %+v", p)
	}
}

// The lab's client hosts' key may write A and AAAA records below the zone,
// none of the cluster's own names; a bundle for hosts has no such key.
func TestHostsKeyRules(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	spec.Dir = t.TempDir()
	zone := spec.ACME.Zone
	cb, err := RenderCluster(ClusterOptions{Spec: spec, Out: filepath.Join(spec.Dir, "cluster"), PublicDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cb.HostsKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("hosts key %q: %v %v", cb.HostsKey, fi, err)
	}
	names := ClusterNames(spec)
	for _, want := range []string{spec.ACME.Name, "ns1." + zone, "ns2." + zone, "acme-a." + zone, "crl.b." + zone, "pki." + zone} {
		if !slices.Contains(names, want) {
			t.Errorf("ClusterNames %v lacks %s", names, want)
		}
	}
	named, _ := os.ReadFile(filepath.Join(spec.Dir, "cluster", "secrets", "named.conf"))
	text := string(named)
	grant := `grant "lab-hosts" wildcard *.` + zone + `. A AAAA;`
	for _, n := range names {
		deny := `deny "lab-hosts" name ` + n + `.;`
		if i, j := strings.Index(text, deny), strings.Index(text, grant); i < 0 || j < 0 || i > j {
			t.Errorf("named.conf: want %s before %s:\n%s", deny, grant, text)
		}
	}
	r := &clusterRender{spec: spec, hosts: &rfc2136.Key{Name: "lab-hosts"}}
	r.cli.Name = spec.Name + "-clients"
	lua := r.updatePolicy()
	for _, want := range []string{`local HOSTS = "lab-hosts."`, `["` + spec.ACME.Name + `."] = true,`} {
		if !strings.Contains(lua, want) {
			t.Errorf("the PowerDNS policy lacks %s:\n%s", want, lua)
		}
	}
	out := t.TempDir()
	cb, err = RenderCluster(ClusterOptions{Spec: spec, Out: out, Root: "/opt/cairn/cluster"})
	if err != nil {
		t.Fatal(err)
	}
	named, _ = os.ReadFile(filepath.Join(out, "secrets", "named.conf"))
	if cb.HostsKey != "" || strings.Contains(string(named), "-hosts") {
		t.Errorf("a bundle for hosts has the lab's hosts key: %q", cb.HostsKey)
	}
}
