package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTemplateIsValidAndRoundTrips(t *testing.T) {
	for _, sites := range [][]string{{"a"}, {"a", "b", "c"}, {"east", "west", "north", "south"}} {
		data, err := Template(sites)
		if err != nil {
			t.Fatal(err)
		}
		spec, errs := ParseAndValidate(data)
		if len(errs) > 0 {
			t.Fatalf("template for %v does not validate:\n%v", sites, errs)
		}
		if got := strings.Join(spec.SiteNames(), ","); got != strings.Join(sites, ",") {
			t.Errorf("sites = %s, want %v", got, sites)
		}
		// Everything written must equal the defaults: nothing is lost in the
		// text. The lab's validation may reach its client hosts.
		want := Default(sites)
		want.Validation = Validation{AllowedNetworks: []string{LabClientNetwork(want).String()}, Challenges: Challenges}
		if fmt.Sprintf("%+v", *want) != fmt.Sprintf("%+v", withoutLines(*spec)) {
			t.Errorf("template for %v differs from Default:\n got %+v\nwant %+v", sites, withoutLines(*spec), *want)
		}
	}
}

func withoutLines(s Spec) Spec { s.lines = nil; return s }

func TestMinimalFileGetsLabDefaults(t *testing.T) {
	spec, errs := ParseAndValidate([]byte("name: prod\nsites:\n  - name: x\n  - name: y\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if spec.ACME.Name != "acme.prod.home.arpa" || spec.Sites[1].SerialPrefix.Hex() != "02" ||
		spec.Sites[1].HSM.Label != "prod-y" || spec.Sites[0].Address != "127.0.31.1" {
		t.Errorf("defaults not derived: %+v", spec)
	}
}

// base is a valid file; each case appends or replaces text and expects
// exactly the listed field paths in the errors.
const base = `name: lab
sites:
  - name: a
    serialPrefix: 0x11
  - name: b
    serialPrefix: 0x12
  - name: c
    serialPrefix: 0x13
`

// shared: a site publishing to the cluster's bucket (AWS module cluster).
const shared = "    crlBaseURL: http://s3.eu-west-1.amazonaws.com/\n    crlStore: {endpoint: https://s3.eu-west-1.amazonaws.com, bucket: cairn-crls, credentialsFile: s3.cred}\n"

func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name  string
		yaml  string
		paths []string // expected error paths, in order
		msg   string   // a fragment of the first message
	}{
		{"valid", base, nil, ""},
		{"duplicate serial prefix and unknown field", strings.Replace(base, "0x13", "0x11", 1) + "colour: blue\n",
			[]string{"sites[2].serialPrefix", "colour"}, "0x11 already used by sites[0]"},
		{"serial prefix out of Boulder's range", strings.Replace(base, "0x13", "0x80", 1),
			[]string{"sites[2].serialPrefix"}, "0x80 is out of range"},
		{"serial prefix not hex", strings.Replace(base, "0x13", "zz", 1),
			[]string{"sites[2].serialPrefix"}, "two hex digits"},
		{"unknown nested field", strings.Replace(base, "  - name: b\n", "  - name: b\n    adress: 127.0.0.9\n", 1),
			[]string{"sites[1].adress"}, "unknown field"},
		{"duplicate site name", strings.Replace(base, "name: c", "name: a", 1),
			[]string{"sites[2].name", "sites[2].hsm.label", "sites[2].crlBaseURL"}, "already used by sites[0]"},
		{"bad types", base + "acme:\n  ttl: soon\nfailover:\n  holdDown: forever\n",
			[]string{"acme.ttl", "failover.holdDown"}, "whole number"},
		{"acme name outside zone", base + "acme:\n  name: acme.example.com\n  zone: lab.home.arpa\n",
			[]string{"acme.name"}, "inside acme.zone"},
		{"zone without public suffix", base + "acme:\n  zone: lab.internal\n",
			[]string{"acme.zone", "acme.name", "acme.caaIdentity", "pki.baseURL", "sites[0].crlBaseURL", "sites[1].crlBaseURL", "sites[2].crlBaseURL"}, "name policy"},
		{"two primaries", base + "dns:\n  servers:\n    - {name: p1, address: 127.0.30.2:53, role: primary}\n    - {name: p2, address: 127.0.30.3:53, role: primary}\n",
			[]string{"dns.servers"}, "exactly one"},
		{"site address clashes with dns", strings.Replace(base, "  - name: a\n", "  - name: a\n    address: 127.0.30.2\n", 1),
			[]string{"sites[0].address"}, "dns.servers"},
		{"overlapping service networks", strings.Replace(base, "  - name: b\n", "  - name: b\n    serviceNetwork: 127.0.31.128/25\n", 1),
			[]string{"sites[1].serviceNetwork"}, "overlaps sites[0]"},
		{"root token shared with a site", strings.Replace(base, "  - name: a\n", "  - name: a\n    hsm: {label: lab-root}\n", 1),
			[]string{"sites[0].hsm.label"}, "own token"},
		{"pkcs11 backend needs labels", base + "pki:\n  hsm:\n    backend: pkcs11\n    module: /usr/lib/x.so\n",
			[]string{"pki.hsm.root.label", "pki.hsm.root.pinFile", "pki.hsm.infrastructure.label", "pki.hsm.infrastructure.pinFile",
				"sites[0].hsm.label", "sites[0].hsm.pinFile", "sites[1].hsm.label", "sites[1].hsm.pinFile", "sites[2].hsm.label", "sites[2].hsm.pinFile"}, "is required"},
		{"validity beyond lints", base + "pki:\n  intermediates:\n    validityDays: 2000\n",
			[]string{"pki.intermediates.validityDays"}, "1..1098"},
		{"rsa type for ecdsa issuer", base + "pki:\n  intermediates:\n    ecdsaKeyType: rsa-2048\n",
			[]string{"pki.intermediates.ecdsaKeyType"}, "ecdsa-p256"},
		{"crl store endpoint without credentials", strings.Replace(base, "  - name: a\n", "  - name: a\n    crlStore: {endpoint: https://minio.example.net:9000}\n", 1),
			[]string{"sites[0].crlStore.credentialsFile"}, "is required"},
		{"one shared store outside every site", strings.Replace(strings.Replace(base, "  - name: a\n", "  - name: a\n"+shared, 1), "  - name: b\n", "  - name: b\n"+shared, 1), nil, ""},
		{"same URL, different stores", strings.Replace(strings.Replace(base, "  - name: a\n", "  - name: a\n"+shared, 1), "  - name: b\n", "  - name: b\n"+strings.Replace(shared, "cairn-crls", "other-crls", 1), 1),
			[]string{"sites[1].crlBaseURL"}, "same crlStore endpoint and bucket"},
		{"crl base URL over https", strings.Replace(base, "  - name: a\n", "  - name: a\n    crlBaseURL: https://crl.a.lab.home.arpa/\n", 1),
			[]string{"sites[0].crlBaseURL"}, "plain HTTP"},
		{"allowed names not DNS suffixes", base + "policy:\n  allowedNames: [\"Corp..x\", \"*.lab.home.arpa\"]\n",
			[]string{"policy.allowedNames[0]"}, "DNS suffix"},
		{"allowed names without the zone", base + "policy:\n  allowedNames: [payments.corp.example]\n", []string{"policy.allowedNames"}, "health probes"},
		{"allowed names with the zone", base + "policy:\n  allowedNames: [home.arpa]\n", nil, ""},
		{"failback mode", base + "failover:\n  failback: sometimes\n", []string{"failover.failback"}, "manual or automatic"},
		{"quorum without shared etcd", base + "failover:\n  quorum: 2\n", []string{"failover.quorum"}, "etcd.endpoints"},
		{"etcd endpoint not a URL, cert without key", base + "failover:\n  etcd:\n    endpoints: [10.0.0.5:2379]\n    certFile: c.pem\n",
			[]string{"failover.etcd.endpoints[0]", "failover.etcd.keyFile"}, "https://10.0.0.5:2379"},
		{"external etcd over plain http", base + "failover:\n  etcd:\n    endpoints: [http://10.0.0.5:2379]\n    certFile: c.pem\n    keyFile: c.key\n",
			[]string{"failover.etcd.endpoints[0]"}, "insecureNoMutualTLS"},
		{"external etcd without a client certificate", base + "failover:\n  etcd:\n    endpoints: [https://10.0.0.5:2379]\n    caFile: ca.pem\n",
			[]string{"failover.etcd.certFile"}, "client certificate"},
		{"insecure etcd said so", base + "failover:\n  etcd:\n    endpoints: [http://10.0.0.5:2379]\n    insecureNoMutualTLS: true\n", nil, ""},
		{"insecure flag on the embedded etcd", base + "failover:\n  etcd:\n    insecureNoMutualTLS: true\n", []string{"failover.etcd.caFile"}, "external cluster"},
		{"views expire between probes", base + "failover:\n  viewMaxAge: 3s\n", []string{"failover.viewMaxAge"}, "two probe intervals"},
		{"resume mode", base + "failover:\n  resume: always\n", []string{"failover.resume"}, "history or off"},
		{"resume confirm", base + "failover:\n  resumeConfirm: -1\n", []string{"failover.resumeConfirm"}, "1 or more"},
		{"dns provider", base + "dns:\n  provider: route53\n", []string{"dns.provider"}, "rfc2136 or powerdns"},
		{"powerdns API not a base URL", base + "dns:\n  provider: powerdns\n  powerdns:\n    api: http://10.0.0.2:8081/api/v1\n    serverID: a/b\n",
			[]string{"dns.powerdns.api", "dns.powerdns.serverID"}, "base URL"},
		{"replication mode", base + "accounts:\n  replication: galera\n", []string{"accounts.replication"}, "mariadb"},
		{"binlog kept too long", base + "accounts:\n  binlogRetention: 2400h\n", []string{"accounts.binlogRetention"}, "1h to"},
		{"etcd on the controller's port", base + "failover:\n  listen: 127.0.0.1:9180\n  etcd:\n    listen: 127.0.0.1:9180\n",
			[]string{"failover.etcd.listen"}, "another port"},
		{"allowed names", base + "policy:\n  allowedNames: ['*.corp.internal', lab.home.arpa]\neab:\n  required: true\n", nil, ""},
		{"allowed name not a suffix", base + "policy:\n  allowedNames: [corp.internal, 10.0.0.0/8]\n", []string{"policy.allowedNames[1]"}, "not a DNS suffix"},
		{"allowed names leave the probes out", base + "policy:\n  allowedNames: [corp.internal]\n", []string{"policy.allowedNames"}, "health probes"},
		{"eab.required not a boolean", base + "eab:\n  required: sometimes\n", []string{"eab.required"}, ""},
		{"list where mapping expected", base + "acme: [1, 2]\n", []string{"acme"}, "expected a mapping"},
		{"not yaml", "name: [unclosed\n", []string{"(file)"}, "not valid YAML"},
		{"empty", "", []string{"(file)"}, "empty"},
		{"no sites", "name: lab\n", []string{"sites"}, "at least one"},
		// The policy cases register the suffix intranet in this process
		// (as cairn validate does); no case here relies on it being refused.
		{"zone under a private suffix", base + "acme:\n  zone: lab.intranet\npolicy:\n  privateSuffixes: [intranet]\n", nil, ""},
		{"zone under a suffix not listed", base + "acme:\n  zone: lab.lan\npolicy:\n  privateSuffixes: [intranet]\n",
			[]string{"acme.zone", "acme.name", "acme.caaIdentity", "pki.baseURL", "sites[0].crlBaseURL", "sites[1].crlBaseURL", "sites[2].crlBaseURL"}, "policy.privateSuffixes"},
		{"public and malformed private suffixes", base + "policy:\n  privateSuffixes: [com, corp.example.com, Corp, intranet, intranet]\n",
			[]string{"policy.privateSuffixes[0]", "policy.privateSuffixes[1]", "policy.privateSuffixes[2]", "policy.privateSuffixes[4]"}, `"com" is already a public suffix`},
		{"networks validation may never reach", base + "validation:\n  allowedNetworks: [10.0.0.0/8, fd00::/8, 0.0.0.0/0, 127.0.0.0/8, 169.254.0.0/16, fe80::/64, 10.1.2.3/8, '::/64', 192.168.0.0/15]\n",
			[]string{"validation.allowedNetworks[2]", "validation.allowedNetworks[3]", "validation.allowedNetworks[4]", "validation.allowedNetworks[5]",
				"validation.allowedNetworks[6]", "validation.allowedNetworks[7]"}, "every address"},
		{"resolvers", base + "validation:\n  resolvers: [10.0.0.53, '10.0.0.54:5353', '[fd00::53]:53']\n", nil, ""},
		{"bad resolvers", base + "validation:\n  resolvers: [dns.corp.internal, 0.0.0.0, '10.0.0.53:0', 10.0.0.53, '10.0.0.53:53']\n",
			[]string{"validation.resolvers[0]", "validation.resolvers[1]", "validation.resolvers[2]", "validation.resolvers[4]"}, "is not an address: give the resolver as IP or IP:port"},
		{"challenge types", base + "validation:\n  challenges: [dns-01, http-02, dns-01]\n",
			[]string{"validation.challenges[1]", "validation.challenges[2]"}, "not a challenge type"},
		{"profiles within Boulder's limits", base + "acme:\n  defaultProfile: short\nprofiles:\n  - {name: long, validity: 99d}\n  - {name: short, validity: 2h}\n", nil, ""},
		{"profile validity of 100 days", base + "profiles:\n  - {name: long, validity: 100d}\n", []string{"profiles[0].validity"}, "100 days or more"},
		{"profile validity within the backdate", base + "profiles:\n  - {name: tiny, validity: 1h5m}\n", []string{"profiles[0].validity"}, "too short"},
		{"profile validity missing", base + "profiles:\n  - {name: x}\n", []string{"profiles[0].validity"}, "is required"},
		{"profile validity beyond time.Duration", base + "profiles:\n  - {name: x, validity: 200000d}\n", []string{"profiles[0].validity"}, "7d"},
		{"profile validity not whole days", base + "profiles:\n  - {name: x, validity: 1.5d}\n", []string{"profiles[0].validity"}, "7d"},
		{"profile name outside Boulder's pattern", base + "profiles:\n  - {name: short-lived, validity: 7d}\n  - {name: tlsserver, validity: 90d}\n",
			[]string{"profiles[0].name"}, "letters and digits"},
		{"duplicate profile names", base + "profiles:\n  - {name: a, validity: 7d}\n  - {name: a, validity: 90d}\n", []string{"profiles[1].name"}, "already used by profiles[0]"},
		{"default profile not listed", base + "acme:\n  defaultProfile: classic\nprofiles:\n  - {name: tlsserver, validity: 90d}\n",
			[]string{"acme.defaultProfile"}, "not one of profiles[].name (tlsserver)"},
		{"profile description over lines", base + "profiles:\n  - {name: a, validity: 7d, description: \"one\\ntwo\"}\n", []string{"profiles[0].description"}, "one line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := ParseAndValidate([]byte(tc.yaml))
			var got []string
			for _, e := range errs {
				got = append(got, e.Path)
			}
			if strings.Join(got, " ") != strings.Join(tc.paths, " ") {
				t.Fatalf("paths = %v, want %v\n%v", got, tc.paths, errs)
			}
			if tc.msg != "" && !strings.Contains(errs[0].Msg, tc.msg) {
				t.Errorf("first error %q does not contain %q", errs[0].Error(), tc.msg)
			}
			for _, e := range errs {
				if strings.Contains(e.Error(), "\n") {
					t.Errorf("error spans lines: %q", e.Error())
				}
			}
		})
	}
}

func TestErrorsCarryLines(t *testing.T) {
	_, errs := ParseAndValidate([]byte(strings.Replace(base, "0x13", "0x11", 1) + "colour: blue\n"))
	if len(errs) != 2 || errs[0].Line != 8 || errs[1].Line != 9 {
		t.Fatalf("lines: %#v", errs)
	}
	if want := "line 8: sites[2].serialPrefix: 0x11 already used by sites[0]"; errs[0].Error() != want {
		t.Errorf("got %q, want %q", errs[0].Error(), want)
	}
}

func FuzzParse(f *testing.F) {
	tmpl, _ := Template([]string{"a", "b"})
	for _, seed := range []string{base, string(tmpl), "", "sites: [{name: a, serialPrefix: 0x}]", "a: &x [*x]", "acme: {ttl: 0x10}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, errs := ParseAndValidate(data)
		if spec == nil {
			t.Fatal("nil spec")
		}
		for _, e := range errs {
			if e.Path == "" || e.Msg == "" {
				t.Fatalf("error without path or message: %#v", e)
			}
		}
	})
}

// Several controllers: an external etcd with TLS and a quorum of two.
// PowerDNS gets its API on the primary's address and a key file by default.
func TestPowerDNSDefaults(t *testing.T) {
	spec, errs := ParseAndValidate([]byte("name: lab\ndns:\n  provider: powerdns\nsites:\n  - name: a\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if p := spec.DNS.PowerDNS; p.API != "http://127.0.30.2:8081" || p.APIKeyFile != "secrets/pdns-api.key" || p.ServerID != "localhost" {
		t.Fatalf("%+v", p)
	}
	data, err := TemplateFor(spec)
	if err != nil {
		t.Fatal(err)
	}
	again, errs := ParseAndValidate(data)
	if len(errs) > 0 || again.DNS.PowerDNS != spec.DNS.PowerDNS {
		t.Fatalf("template round trip: %+v %v", again.DNS, errs)
	}
}

func TestExternalEtcd(t *testing.T) {
	spec, errs := ParseAndValidate([]byte(base + "failover:\n  quorum: 2\n  etcd:\n    endpoints: [https://10.0.0.5:2379, https://10.0.1.5:2379]\n    caFile: etcd-ca.pem\n    certFile: c.pem\n    keyFile: c.key\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	e := spec.Failover.Etcd
	if e.Embedded() || e.Listen != "" || e.DataDir != "" || e.Prefix != "/cairn/lab/" || spec.Failover.Quorum != 2 {
		t.Fatalf("etcd: %+v", e)
	}
}

// A huge bad value comes back as a short excerpt, never whole.
func TestErrorsQuoteOnlyAnExcerpt(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	for _, text := range []string{"name: " + huge + "\n", huge + "\n", "sites: [" + huge + "]\n", huge + ": 1\n"} {
		_, errs := ParseAndValidate([]byte(text))
		if len(errs) == 0 {
			t.Fatalf("%.20s…: no error", text)
		}
		err := errs
		for _, e := range errs {
			if len(e.Error()) > 400 {
				t.Errorf("%.20s…: error of %d characters: %.120s…", text, len(e.Error()), e.Error())
			}
		}
		if strings.HasPrefix(text, "name:") && !strings.Contains(err.Error(), "… (1048576 characters)") {
			t.Errorf("the excerpt does not say how long the value was: %.300s", err.Error())
		}
	}
}

// A key given twice (two acme: blocks, or a field twice in one) is an
// error naming both lines, not a silent merge where the later one wins.
func TestDuplicateKeysNameBothLines(t *testing.T) {
	_, errs := ParseAndValidate([]byte(base + "acme:\n  ttl: 60\nacme:\n  name: acme.lab.home.arpa\n"))
	found := false
	for _, e := range errs {
		if e.Path == "acme" && strings.Contains(e.Msg, "given twice") && strings.Contains(e.Msg, "lines ") {
			found = true
			t.Log(e.Error())
		}
	}
	if !found {
		t.Fatalf("two acme: blocks: %v", errs)
	}
	_, errs = ParseAndValidate([]byte(strings.Replace(base, "name: a\n", "name: a\n    name: z\n", 1)))
	if len(errs) == 0 || !strings.Contains(errs[0].Msg, "given twice") {
		t.Errorf("a field twice in one site: %v", errs)
	}
}

// Challenges default to DNS-01 alone; with networks validation may
// reach, HTTP-01 and TLS-ALPN-01 too; a list the operator wrote stays.
func TestChallengeDefaults(t *testing.T) {
	for extra, want := range map[string]string{
		"": "dns-01",
		"validation:\n  allowedNetworks: [10.0.0.0/8]\n":                          "dns-01 http-01 tls-alpn-01",
		"validation:\n  allowedNetworks: [10.0.0.0/8]\n  challenges: [http-01]\n": "http-01",
	} {
		spec, errs := ParseAndValidate([]byte(base + extra))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if got := strings.Join(spec.Validation.Challenges, " "); got != want {
			t.Errorf("%q: challenges %s, want %s", extra, got, want)
		}
	}
}

// Each refused network says why, in one line.
func TestAllowedNetworkReasons(t *testing.T) {
	for n, why := range map[string]string{"127.0.0.0/8": "loopback", "169.254.0.0/16": "metadata", "'::fffe:0:0/95'": "IPv4-mapped", "'::/64'": "loopback", "224.0.0.0/4": "multicast"} {
		_, errs := ParseAndValidate([]byte(base + "validation:\n  allowedNetworks: [" + n + "]\n"))
		if len(errs) != 1 || !strings.Contains(errs[0].Msg, why) || strings.Contains(errs[0].Error(), "\n") {
			t.Errorf("%s: %v, want one line saying %q", n, errs, why)
		}
	}
}

// Without profiles the cluster offers what every site offered before
// (classic, 90 days, the default) plus shortlived (7 days); listed
// profiles replace them, the first being the default.
func TestProfileDefaults(t *testing.T) {
	spec, errs := ParseAndValidate([]byte(base))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := fmt.Sprintf("%v %v", spec.Profiles, spec.ACME.DefaultProfile)
	want := fmt.Sprintf("%v %v", []Profile{{ClassicProfile, Duration{90 * 24 * time.Hour}, "90 days"}, {ShortLivedProfile, Duration{7 * 24 * time.Hour}, "7 days"}}, ClassicProfile)
	if got != want {
		t.Errorf("default profiles = %s, want %s", got, want)
	}
	spec, errs = ParseAndValidate([]byte(base + "profiles:\n  - {name: week, validity: 168h}\n  - {name: day, validity: 1d, description: https://ca.example/day}\n  - {name: odd, validity: 36h}\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got = fmt.Sprintf("%v %v", spec.ProfileDescriptions(), spec.ACME.DefaultProfile)
	if want := "map[day:https://ca.example/day odd:36h0m0s week:7 days] week"; got != want {
		t.Errorf("listed profiles = %s, want %s", got, want)
	}
}

// The client hosts' block follows the lab's loopback block (each lab on a
// machine has its own); a bad block is one error naming the field.
func TestLabClientNetwork(t *testing.T) {
	spec, errs := ParseAndValidate([]byte(base))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	primary := spec.PrimaryDNS().Addr().As4()
	if want := fmt.Sprintf("10.77.%d.0/24", primary[2]); LabClientNetwork(spec).String() != want {
		t.Errorf("default %s, want %s (from the primary %s)", LabClientNetwork(spec), want, spec.PrimaryDNS())
	}
	other, errs := ParseAndValidate([]byte(base + "dns:\n  servers: [{name: p, address: 127.0.140.2:53, role: primary}]\n"))
	if len(errs) > 0 || LabClientNetwork(other).String() != "10.77.140.0/24" {
		t.Errorf("from 127.0.140.2: %s %v", other.Lab.ClientNetwork, errs)
	}
	for value, want := range map[string]string{
		"10.77.0.0":      "is not an IPv4 CIDR block",
		"fd00::/64":      "is not an IPv4 CIDR block",
		"10.77.0.5/24":   "use 10.77.0.0/24",
		"10.0.0.0/8":     "/8 is out of range",
		"10.77.0.0/30":   "/30 is out of range",
		"127.0.99.0/24":  "loopback",
		"169.254.0.0/16": "link-local",
	} {
		_, errs := ParseAndValidate([]byte(base + "lab:\n  clientNetwork: " + value + "\n"))
		if len(errs) != 1 || errs[0].Path != "lab.clientNetwork" || !strings.Contains(errs[0].Msg, want) {
			t.Errorf("clientNetwork %s: %v, want one lab.clientNetwork error with %q", value, errs, want)
		}
	}
	_, errs = ParseAndValidate([]byte("name: lab\nsites:\n  - {name: a, address: 10.77.0.1, serviceNetwork: 10.77.0.0/16}\nlab:\n  clientNetwork: 10.77.5.0/24\n"))
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "overlaps sites[0].serviceNetwork 10.77.0.0/16") {
		t.Errorf("a block inside a site's: %v", errs)
	}
}

// The lab's client hosts answer HTTP-01 and TLS-ALPN-01 only when the
// sites offer them and validation may reach all of lab.clientNetwork.
func TestLabHostsAnswer(t *testing.T) {
	for _, tc := range []struct {
		validation string
		want       map[string]bool
	}{
		{"", map[string]bool{ChallengeDNS01: true, ChallengeHTTP01: false, ChallengeTLSALPN01: false}},
		{"validation: {allowedNetworks: [10.0.0.0/8]}\n", map[string]bool{ChallengeDNS01: true, ChallengeHTTP01: true, ChallengeTLSALPN01: true}},
		{"validation: {allowedNetworks: [10.77.30.0/25]}\n", map[string]bool{ChallengeDNS01: true, ChallengeHTTP01: false, ChallengeTLSALPN01: false}},
		{"validation: {allowedNetworks: [192.168.0.0/16]}\n", map[string]bool{ChallengeHTTP01: false}},
		{"validation: {allowedNetworks: [10.77.30.0/24], challenges: [http-01]}\n", map[string]bool{ChallengeDNS01: false, ChallengeHTTP01: true, ChallengeTLSALPN01: false}},
	} {
		spec, errs := ParseAndValidate([]byte(base + tc.validation + "lab: {clientNetwork: 10.77.30.0/24}\n"))
		if len(errs) > 0 {
			t.Fatalf("%q: %v", tc.validation, errs)
		}
		for c, want := range tc.want {
			if got := LabHostsAnswer(spec, c); got != want {
				t.Errorf("%q: client hosts answer %s: %v, want %v", tc.validation, c, got, want)
			}
		}
	}
}
