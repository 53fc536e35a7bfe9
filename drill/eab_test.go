package drill

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/lab"
)

func testKey(t *testing.T) *drillKey {
	secret := make([]byte, 32)
	rand.Read(secret)
	return &drillKey{kid: "eab-0123456789abcdef01234567", hmac: base64.RawURLEncoding.EncodeToString(secret)}
}

// Every real client gets the run's key: certbot in a 0600 configuration
// file its command line names, lego v5 in its environment, lego 4 with
// its flags before the command (the only way it takes one); without a
// key none of them is told about EAB.
func TestRealClientsGetTheDrillKey(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "lego5"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	spec := cluster.Default([]string{"a"})
	primary := netip.MustParseAddrPort("127.0.0.1:53")
	key := testKey(t)
	names := []string{"certbot", "certbot-http", "lego", "lego-http", "lego-tls", "lego5", "lego5-shortlived"}
	setup := func(k *drillKey, n string) (*realClient, []string, []string) {
		t.Helper()
		w := &workload{spec: spec, key: k}
		w.dnsUp.Server = primary.String()
		rc := &realClient{name: n, kind: realClientKinds[n], dir: filepath.Join(t.TempDir(), n), resolv: "/resolv.conf", w: w}
		if err := os.MkdirAll(rc.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := w.commands(rc, "https://acme.example/directory", "x."+spec.ACME.Zone, "/root.pem", primary); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		// What it runs here (the client hosts' runs add the same
		// environment to lab exec's).
		var args, env []string
		for _, line := range [][]string{rc.issue, rc.renew} {
			cmd, err := rc.command(context.Background(), line)
			if err != nil {
				t.Fatal(err)
			}
			args, env = append(args, cmd.Args...), append(env, cmd.Env...)
		}
		return rc, args, env
	}
	for _, n := range names {
		rc, args, env := setup(key, n)
		argv := strings.Join(args, " ")
		switch rc.kind.program {
		case "certbot":
			file := filepath.Join(rc.dir, certbotEABFile)
			i := slices.Index(rc.issue, "--config")
			if i < 0 || i+1 >= len(rc.issue) || rc.issue[i+1] != file {
				t.Errorf("%s: issue %q does not name %s with --config", n, rc.issue, file)
			}
			fi, err := os.Stat(file)
			b, _ := os.ReadFile(file)
			if err != nil || fi.Mode().Perm() != 0o600 || string(b) != "eab-kid = "+key.kid+"\neab-hmac-key = "+key.hmac+"\n" {
				t.Errorf("%s: %s: %v %v %q", n, file, err, fi.Mode(), b)
			}
		case "lego5":
			for _, want := range []string{"LEGO_EAB=true", "LEGO_EAB_KID=" + key.kid, "LEGO_EAB_HMAC=" + key.hmac} {
				if !slices.Contains(env, want) {
					t.Errorf("%s: environment lacks %s", n, strings.SplitN(want, "=", 2)[0])
				}
			}
		case "lego":
			// revoke too: lego 4 refuses every command without the key
			// when the directory requires EAB.
			for _, line := range [][]string{rc.issue, rc.renew, rc.revoke} {
				i, cmd := slices.Index(line, "--eab"), slices.IndexFunc(line, func(a string) bool { return a == "run" || a == "renew" || a == "revoke" })
				if i < 0 || cmd < i || !slices.Equal(line[i:i+4], []string{"--eab", "--kid", key.kid, "--hmac=" + key.hmac}) {
					t.Errorf("%s: %q: want --eab --kid KID --hmac=HMAC before its command", n, line)
				}
			}
			continue // lego 4 takes the key on its command line only
		}
		if strings.Contains(argv, key.hmac) {
			t.Errorf("%s: the HMAC key is on a command line: %s", n, argv)
		}
	}
	// Without a key (eab.required off) nothing of it.
	for _, n := range names {
		rc, args, env := setup(nil, n)
		if all := strings.Join(append(args, env...), " "); strings.Contains(all, "--eab") || strings.Contains(all, "LEGO_EAB") || slices.Contains(rc.issue, "--config") {
			t.Errorf("%s without a key: %q", n, args)
		}
	}
}

// The built-in clients (workload, site clients) register with the run's
// key: an ACME server that requires EAB checks the binding's MAC, key ID,
// URL and payload.
func TestGoClientsRegisterWithTheDrillKey(t *testing.T) {
	key := testKey(t)
	secret, _ := base64.RawURLEncoding.DecodeString(key.hmac)
	var srv *httptest.Server
	bound := make(chan string, 4)
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Replay-Nonce", base64.RawURLEncoding.EncodeToString([]byte(time.Now().String())))
		switch r.URL.Path {
		case "/directory":
			json.NewEncoder(w).Encode(map[string]any{"newNonce": srv.URL + "/nonce", "newAccount": srv.URL + "/account", "newOrder": srv.URL + "/order",
				"meta": map[string]any{"externalAccountRequired": true}})
		case "/nonce":
			w.WriteHeader(http.StatusOK)
		case "/account":
			if why := checkBinding(r, srv.URL+"/account", key.kid, secret); why != "" {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusForbidden)
				json.NewEncoder(w).Encode(map[string]string{"type": "urn:ietf:params:acme:error:externalAccountRequired", "detail": why})
				return
			}
			bound <- key.kid
			w.Header().Set("Location", srv.URL+"/account/1")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"status":"valid"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	register := func(w *workload) error {
		c, err := acmeclient.New(w.options(acmeclient.Options{DirectoryURL: srv.URL + "/directory", Roots: roots}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Register(context.Background())
		return err
	}
	if err := register(&workload{key: key}); err != nil {
		t.Fatalf("with the drill's key: %v", err)
	}
	if got := <-bound; got != key.kid {
		t.Errorf("bound to %q", got)
	}
	if err := register(&workload{}); err == nil || !strings.Contains(err.Error(), "externalAccountBinding") {
		t.Errorf("without a key: %v, want the server's refusal", err)
	}
}

// checkBinding verifies newAccount's externalAccountBinding (RFC 8555
// §7.3.4) and says what is wrong, "" when it is right.
func checkBinding(r *http.Request, url, kid string, secret []byte) string {
	var outer struct{ Protected, Payload string }
	if err := json.NewDecoder(r.Body).Decode(&outer); err != nil {
		return err.Error()
	}
	var hdr struct {
		JWK json.RawMessage `json:"jwk"`
	}
	var payload struct {
		EAB *struct{ Protected, Payload, Signature string } `json:"externalAccountBinding"`
	}
	p, _ := base64.RawURLEncoding.DecodeString(outer.Payload)
	h, _ := base64.RawURLEncoding.DecodeString(outer.Protected)
	if json.Unmarshal(p, &payload) != nil || json.Unmarshal(h, &hdr) != nil || payload.EAB == nil {
		return "no externalAccountBinding"
	}
	e := payload.EAB
	var eh struct{ Alg, Kid, URL string }
	b, _ := base64.RawURLEncoding.DecodeString(e.Protected)
	if json.Unmarshal(b, &eh) != nil || eh.Alg != "HS256" || eh.Kid != kid || eh.URL != url {
		return "externalAccountBinding header " + string(b)
	}
	jwk, _ := base64.RawURLEncoding.DecodeString(e.Payload)
	if string(jwk) != string(hdr.JWK) {
		return "externalAccountBinding payload is not the account key"
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(e.Protected + "." + e.Payload))
	sig, _ := base64.RawURLEncoding.DecodeString(e.Signature)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return "externalAccountBinding MAC does not verify"
	}
	return ""
}

// The key's label names the scenario and the run's time; the journal
// keeps the key's ID (so a killed drill's key is revoked after it), never
// its HMAC key, and stays while it holds a key.
func TestDrillKeyLabelAndJournal(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))
	if got := drillKeyLabel("site-down", at); got != "drill-site-down-20260304T040607Z" {
		t.Errorf("label %q", got)
	}
	if !regexp.MustCompile(`^drill-[a-z-]+-\d{8}T\d{6}Z$`).MatchString(drillKeyLabel("peer-db-down", time.Now())) {
		t.Error("label format")
	}
	spec := cluster.Default([]string{"a"})
	spec.Dir = t.TempDir()
	l := &lab.Lab{Spec: spec}
	key := testKey(t)
	j := &journal{PID: os.Getpid(), EABKey: key.kid}
	if err := writeJournal(l.Spec, j); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(journalPath(l.Spec))
	if err != nil || !strings.Contains(string(b), key.kid) || strings.Contains(string(b), key.hmac) {
		t.Fatalf("journal with a key: %v %s", err, b)
	}
	j.EABKey = ""
	if err := writeJournal(l.Spec, j); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journalPath(l.Spec)); !os.IsNotExist(err) {
		t.Errorf("the journal outlived the key's revocation: %v", err)
	}
}
