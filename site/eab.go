package site

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmefront"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// External Account Binding (docs/authority.md). The keys, their
// revocations and the accounts bound to them live in the cairn schema of
// every site's MariaDB and replicate like the accounts: each table's rows
// carry an ID that auto_increment (or, for a binding, the account's own ID)
// puts in the writing site's range, and the ownership triggers refuse a
// peer's row outside that peer's range. Nothing is ever updated or
// deleted: a revocation is a row of its own, which any site may write, so
// `cairn accounts eab revoke` works while a key's home site is down.
const (
	// EABKeysTable: id (the creating site's range), kid, hmac_key (the
	// secret the ACME fronts verify bindings with), label, scope (name
	// suffixes, space-separated; "" = the cluster's allowedNames),
	// created_at.
	EABKeysTable = acmefront.KeysTable
	// EABRevocationsTable: id (the revoking site's range), kid, revoked_at.
	EABRevocationsTable = acmefront.RevocationsTable
	// EABBindingsTable: account_id (made at the site that bound it: its
	// range), kid, bound_at.
	EABBindingsTable = acmefront.BindingsTable
)

// ReplicatedTables are every table sites exchange, each with the column
// that names its origin site (value mod 128 = the site's serial prefix).
var ReplicatedTables = []struct{ Table, OwnerColumn string }{
	{ReplicatedTable, "id"},
	{EABKeysTable, "id"},
	{EABRevocationsTable, "id"},
	{EABBindingsTable, "account_id"},
}

// ReplicationFilter is every connection's replicate_do_table value.
func ReplicationFilter() string {
	names := make([]string, len(ReplicatedTables))
	for i, t := range ReplicatedTables {
		names[i] = t.Table
	}
	return strings.Join(names, ",")
}

// FilterOK reports whether a connection's Replicate_Do_Table is exactly
// the replicated tables (MariaDB may list them in another order). Any
// other table would bring a peer's orders or certificates in; a missing
// one would keep accounts or keys from following the ACME name.
func FilterOK(doTable string) bool {
	have := strings.Split(strings.TrimSpace(doTable), ",")
	want := strings.Split(ReplicationFilter(), ",")
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(have, want)
}

// FrontDBUser is the ACME front's database user: it reads keys,
// revocations and bindings, looks an account key up by its digest in the
// accounts table (two columns), and inserts bindings. Nothing else.
const FrontDBUser = "cairn_front"

// frontPasswordSecret is its password in the bundle's secrets.
const frontPasswordSecret = "db_cairn_front.pw"

// eabSchemaSQL makes the EAB tables (idempotent; run with sql_log_bin=0
// like the rest of db-replication.sql, so every site makes its own).
func eabSchemaSQL() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  kid VARCHAR(64) CHARACTER SET ascii NOT NULL,
  hmac_key VARBINARY(64) NOT NULL,
  label VARCHAR(200) NOT NULL,
  scope VARCHAR(2000) CHARACTER SET ascii NOT NULL DEFAULT '',
  created_at DATETIME NOT NULL,
  UNIQUE KEY kid (kid)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS %s (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  kid VARCHAR(64) CHARACTER SET ascii NOT NULL,
  revoked_at DATETIME(3) NOT NULL,
  KEY kid (kid)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS %s (
  account_id BIGINT NOT NULL PRIMARY KEY,
  kid VARCHAR(64) CHARACTER SET ascii NOT NULL,
  bound_at DATETIME NOT NULL,
  KEY kid (kid)
) ENGINE=InnoDB;
`, EABKeysTable, EABRevocationsTable, EABBindingsTable)
}

// eabGrantsSQL gives the front and the administrator what they need of
// the EAB tables. The administrator (`cairn accounts eab` and `cairn
// accounts seed`, from the machine that renders, TLS with a client
// certificate only that machine holds) creates and revokes keys, and
// copies every EAB row, HMAC keys included, to a rebuilt site: without
// them it would refuse every bound account. It never updates or deletes
// one.
func eabGrantsSQL(p *Plan, frontPW string) string {
	var b strings.Builder
	for _, host := range []string{p.DB.String(), "127.0.0.1"} {
		fmt.Fprintf(&b, "CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s';\n", FrontDBUser, host, frontPW)
		fmt.Fprintf(&b, "ALTER USER '%s'@'%s' IDENTIFIED BY '%s';\n", FrontDBUser, host, frontPW)
		for _, g := range []string{
			"SELECT ON " + EABKeysTable, "SELECT ON " + EABRevocationsTable, "SELECT, INSERT ON " + EABBindingsTable,
			"SELECT (id, jwk_sha256) ON " + ReplicatedTable,
		} {
			fmt.Fprintf(&b, "GRANT %s TO '%s'@'%s';\n", g, FrontDBUser, host)
		}
	}
	for _, g := range []string{
		"SELECT, INSERT ON " + EABKeysTable,
		"SELECT, INSERT ON " + EABRevocationsTable, "SELECT, INSERT ON " + EABBindingsTable,
	} {
		fmt.Fprintf(&b, "GRANT %s TO '%s'@'%%';\n", g, AdminUser)
	}
	return b.String()
}

// ProbeAccountKeyFile is a site's probe account key, relative to the spec.
// Every site has its own: accounts replicate between sites, and one key
// registered at two sites would collide on the key's unique index.
func ProbeAccountKeyFile(site string) string { return "secrets/probe-account-" + site + ".key" }

// ProbeAccountKey is a site's probe account key, made at first use.
func ProbeAccountKey(spec *cluster.Spec, site string) (crypto.Signer, error) {
	return loadOrCreateKey(spec.Path(ProbeAccountKeyFile(site)))
}

// probeKeyDigests are the account-key digests (Boulder's jwk_sha256) of
// every site's probe key: the fronts let the probes register without a
// binding when eab.required is on (the controller holds these keys).
func probeKeyDigests(spec *cluster.Spec) ([]string, error) {
	var out []string
	for _, s := range spec.Sites {
		k, err := ProbeAccountKey(spec, s.Name)
		if err != nil {
			return nil, fmt.Errorf("probe account key of %s: %w", s.Name, err)
		}
		d, err := KeyDigest(k.Public())
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// KeyDigest is Boulder's account-key digest (registrations.jwk_sha256):
// standard base64 of the SHA-256 of the key's PKIX DER (core.KeyDigestB64).
func KeyDigest(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// loadOrCreateKey reads a PKCS#8 key (0600) or creates a P-256 one.
func loadOrCreateKey(path string) (crypto.Signer, error) {
	if !fsutil.Exists(path) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err := fsutil.CheckSecretFile(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}
