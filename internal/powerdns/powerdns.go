// Package powerdns prepares a PowerDNS Authoritative server with the
// gsqlite3 backend: its database, created from the schema the Debian
// package ships, before the server first starts.
package powerdns

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
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

// Key is a TSIG key as the database holds it.
type Key struct {
	Name, Algorithm, Secret string
}

// SetTSIGKeys makes the database's TSIG keys exactly keys, in one
// transaction, when they differ (the running server reads them at each
// signed request). Stored as `pdnsutil import-tsig-key` stores them
// (lower case, no trailing dots), but without putting a secret on a
// command line, where every user of the machine could read it.
func SetTSIGKeys(path string, keys []Key) error {
	if !fsutil.Exists(path) {
		return fmt.Errorf("PowerDNS database %s does not exist", path)
	}
	canon := func(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }
	want := map[Key]bool{}
	for _, k := range keys {
		want[Key{canon(k.Name), canon(k.Algorithm), k.Secret}] = true
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	have := map[Key]bool{}
	rows, err := db.Query("SELECT name, algorithm, secret FROM tsigkeys")
	if err != nil {
		return err
	}
	for rows.Next() {
		var k Key
		if err := rows.Scan(&k.Name, &k.Algorithm, &k.Secret); err != nil {
			rows.Close()
			return err
		}
		have[k] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if maps.Equal(have, want) {
		return nil
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec("DELETE FROM tsigkeys"); err != nil {
		return err
	}
	for k := range want {
		if _, err := tx.Exec("INSERT INTO tsigkeys (name, algorithm, secret) VALUES (?, ?, ?)", k.Name, k.Algorithm, k.Secret); err != nil {
			return fmt.Errorf("TSIG key %s into %s: %w", k.Name, path, err)
		}
	}
	return tx.Commit()
}
