// Package powerdns prepares a PowerDNS Authoritative server with the
// gsqlite3 backend: its database, created from the schema the Debian
// package ships, before the server first starts.
package powerdns

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	_ "modernc.org/sqlite" // pure-Go SQLite driver

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// SchemaFiles are where pdns-backend-sqlite3 puts its schema (Debian).
var SchemaFiles = []string{
	"/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
	"/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
}

// CreateDB creates the gsqlite3 database at path from the installed
// schema, unless it exists. It is written next to path and renamed into
// place, so an interrupted run leaves no half-made database.
func CreateDB(path string) error {
	if fsutil.Exists(path) {
		return nil
	}
	var schema []byte
	for _, f := range SchemaFiles {
		if b, err := os.ReadFile(f); err == nil {
			schema = b
			break
		}
	}
	if schema == nil {
		return errors.New("the PowerDNS SQLite schema is missing: install pdns-server and pdns-backend-sqlite3 (scripts/deps.sh does)")
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	db, err := sql.Open("sqlite", "file:"+tmp)
	if err != nil {
		return err
	}
	if _, err := db.Exec(string(schema)); err != nil {
		db.Close()
		os.Remove(tmp)
		return fmt.Errorf("PowerDNS schema: %w", err)
	}
	if err := db.Close(); err != nil {
		return err
	}
	// It will hold TSIG secrets.
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ImportTSIGKey stores a TSIG key in the gsqlite3 database at path as
// `pdnsutil import-tsig-key` would (lower case, no trailing dots, replacing
// a key of that name and algorithm), without putting the secret on a
// command line, where every user of the machine could read it.
func ImportTSIGKey(path, name, algorithm, secret string) error {
	if !fsutil.Exists(path) {
		return fmt.Errorf("PowerDNS database %s does not exist", path)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	canon := func(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }
	if _, err := db.Exec("REPLACE INTO tsigkeys (name, algorithm, secret) VALUES (?, ?, ?)", canon(name), canon(algorithm), secret); err != nil {
		return fmt.Errorf("import TSIG key %s into %s: %w", name, path, err)
	}
	return db.Close()
}
