package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/lab"
)

// lab up prints the HTTP-01 form (lego --http and certbot --standalone on
// client hosts) when validation reaches the client hosts, as cairn init's
// lab spec says; without that, the DNS-01 form and what to add.
func TestLabUpPrintsTheHTTP01Form(t *testing.T) {
	sum := &lab.Summary{DirectoryURL: "https://acme.lab.home.arpa/directory", DNS: "127.0.30.2:53", Zone: "lab.home.arpa",
		Sites: []lab.SiteSummary{{Name: "a", Address: "127.0.31.1"}}}
	print := func(spec *cluster.Spec) string {
		var b bytes.Buffer
		cmd := &cobra.Command{}
		cmd.SetOut(&b)
		printSummary(cmd, sum, spec, "bin/cairn")
		return b.String()
	}
	spec := cluster.Default([]string{"a"})
	spec.Validation.AllowedNetworks = []string{cluster.LabClientNetwork(spec).String()}
	spec.Validation.Challenges = nil
	spec.ApplyDefaults()
	out := print(spec)
	_, first, _ := strings.Cut(out, "Get a certificate through the ACME name")
	first, _, _ = strings.Cut(first, "\n\n")
	for _, want := range []string{
		"bin/cairn lab exec --host web1 -- lego --server https://acme.lab.home.arpa/directory --accept-tos --email ops@lab.home.arpa --path ./lego \\\n    --http --domains web1.lab.home.arpa run",
		"bin/cairn lab exec --host web2 -- certbot certonly --standalone ",
		"-d web2.lab.home.arpa",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("the first commands lab up prints lack %q:\n%s", want, first)
		}
	}
	if strings.Contains(first, "--dns rfc2136") || !strings.Contains(out, "TLS-ALPN-01: lego --tls") {
		t.Errorf("with HTTP-01 to the client hosts:\n%s", out)
	}

	// With eab.required: the command that makes a key into EAB_KID and
	// EAB_HMAC first, and every client command takes them.
	spec.EAB.Required = true
	out = print(spec)
	if !strings.Contains(out, "EAB is required") || !strings.Contains(out, eabEnvCommand("bin/cairn")) {
		t.Errorf("with eab.required lab up does not say how to make a key:\n%s", out)
	}
	if n := strings.Count(out, `--eab --kid "$EAB_KID" --hmac="$EAB_HMAC" run`); n != 3 {
		t.Errorf("with eab.required %d lego commands take the key, want 3:\n%s", n, out)
	}
	if n := strings.Count(out, `--eab-kid "$EAB_KID" --eab-hmac-key="$EAB_HMAC"`); n != 3 {
		t.Errorf("with eab.required %d certbot commands take the key, want 3:\n%s", n, out)
	}

	dnsOnly := cluster.Default([]string{"a"})
	out = print(dnsOnly)
	if strings.Contains(out, "--http") || strings.Contains(out, "--standalone") || strings.Contains(out, "EAB") ||
		!strings.Contains(out, "needs lab.clientNetwork "+cluster.LabClientNetwork(dnsOnly).String()+" in validation.allowedNetworks") {
		t.Errorf("without allowed networks lab up prints:\n%s", out)
	}
}
