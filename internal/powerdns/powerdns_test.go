package powerdns

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// A key imported without pdnsutil is the key pdnsutil (so PowerDNS) reads,
// and the database holding it is readable by its owner only.
func TestImportedTSIGKeyIsWhatPowerDNSReads(t *testing.T) {
	testenv.Integration(t, "pdnsutil")
	dir := t.TempDir()
	db := filepath.Join(dir, "pdns.sqlite3")
	if err := CreateDB(db); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(db); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	conf := "launch=gsqlite3\ngsqlite3-database=" + db + "\n"
	if err := os.WriteFile(filepath.Join(dir, "pdns.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	first, second := fsutil.RandomHex(32), fsutil.RandomHex(32)
	for _, secret := range []string{first, second} { // the second replaces the first
		if err := SetTSIGKeys(db, []Key{{"Cairn-Clients.", "HMAC-SHA256.", secret}}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("pdnsutil", "--config-dir="+dir, "list-tsig-keys").CombinedOutput()
	if err != nil {
		t.Fatalf("pdnsutil list-tsig-keys: %v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "cairn-clients. hmac-sha256. "+second; got != want {
		t.Errorf("pdnsutil lists %q, want %q", got, want)
	}
	if err := SetTSIGKeys(filepath.Join(dir, "missing.sqlite3"), []Key{{"k", "hmac-sha256", second}}); err == nil {
		t.Error("a missing database was accepted")
	}
}
