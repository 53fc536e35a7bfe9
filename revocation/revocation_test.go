package revocation

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
)

func TestRouteBySerialPrefix(t *testing.T) {
	spec := cluster.Default([]string{"a", "b", "c"})
	for _, tc := range []struct{ serial, site, err string }{
		{"0x02:ab:cd", "b", ""},
		{"03" + strings.Repeat("ff", 17), "c", ""},
		{"01 00 11", "a", ""},
		{"2c4ab7c70be44cf320e441962727a139026", "b", ""}, // its leading zero left out
		{"7f00", "", "serial prefix of no site"},
	} {
		s, err := ParseSerial(tc.serial)
		if err != nil {
			t.Fatalf("%s: %v", tc.serial, err)
		}
		if len(s) != 36 {
			t.Errorf("%s: %q is not 18 bytes of hex", tc.serial, s)
		}
		site, err := Route(spec, s)
		if site != tc.site || (tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err))) {
			t.Errorf("%s: site %q, %v", tc.serial, site, err)
		}
	}
	if _, err := ParseSerial("xyz" + strings.Repeat("0", 200)); err == nil || !strings.HasPrefix(err.Error(), "--serial") || len(err.Error()) > 200 {
		t.Errorf("bad serial: %v", err)
	}
	if err := CheckReason("keyCompromise"); err != nil {
		t.Error(err)
	}
	if err := CheckReason("cACompromise"); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Errorf("bad reason: %v", err)
	}
}

func TestAdminMapsItsAnswers(t *testing.T) {
	var argv []string
	answer := func(out string, fail bool) func(*exec.Cmd) ([]byte, error) {
		return func(c *exec.Cmd) ([]byte, error) {
			argv = c.Args
			if fail {
				return []byte(out), errors.New("exit status 1")
			}
			return []byte(out), nil
		}
	}
	a := Admin{Binary: "admin", Config: func(s string) string { return "/sites/" + s + "/etc/admin.json" }}
	a.Run = answer("", false)
	if err := a.Revoke(context.Background(), "b", "02ab", "superseded"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(argv, " "); got != "admin -config /sites/b/etc/admin.json -dry-run=false revoke-cert -serial 02ab -reason superseded" {
		t.Errorf("argv %s", got)
	}
	a.Run = answer("... rpc error: code = AlreadyExists desc = certificate already revoked", true)
	if err := a.Revoke(context.Background(), "b", "02ab", "superseded"); !errors.Is(err, ErrAlreadyRevoked) {
		t.Errorf("already revoked: %v", err)
	}
	a.Run = answer("... serial not found", true)
	if err := a.Revoke(context.Background(), "b", "02ab", "superseded"); !errors.Is(err, ErrNotFound) {
		t.Errorf("not found: %v", err)
	}
	a.Run = answer("connection refused", true)
	if err := a.Revoke(context.Background(), "b", "02ab", "superseded"); err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrAlreadyRevoked) {
		t.Errorf("site down: %v", err)
	}
}

func TestBlockKeyTellsAFailureFromAKeyAlreadyBlocked(t *testing.T) {
	a := Admin{Binary: "admin", Config: func(s string) string { return s }}
	for out, want := range map[string]bool{
		"checking if key is already blocked: rpc error: code = Unavailable desc = connection refused": false,
		"the provided key already exists in the 'blockedKeys' table":                                  true,
		"not blocking 0a1b: already blocked":                                                          true,
	} {
		a.Run = func(*exec.Cmd) ([]byte, error) { return []byte(out), errors.New("exit status 1") }
		if err := a.BlockKey(context.Background(), "b", "0a1b", "x"); (err == nil) != want {
			t.Errorf("%q: %v", out, err)
		}
	}
}
