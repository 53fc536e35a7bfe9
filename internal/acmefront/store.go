package acmefront

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/namescope"
)

// DBConfig is the site's database as the front reaches it: its own user
// (site.FrontDBUser: read keys, revocations, bindings and two columns of
// the accounts; insert bindings), the password in a 0600 file.
type DBConfig struct {
	Addr         string `json:"addr"`
	User         string `json:"user"`
	PasswordFile string `json:"passwordFile"`
}

// The EAB tables (made by the site's db-replication.sql: site/eab.go)
// and Boulder's accounts table.
const (
	KeysTable        = "cairn.eab_keys"
	RevocationsTable = "cairn.eab_revocations"
	BindingsTable    = "cairn.eab_bindings"
	accountsTable    = "boulder_sa.registrations"
)

// storeTimeout bounds one lookup: a database that does not answer makes
// the front refuse (503), never pass.
const storeTimeout = 3 * time.Second

// SQLStore is the Store of the site's MariaDB. No cache: a revocation
// counts from the moment its row is at this site.
type SQLStore struct{ db *sql.DB }

// OpenSQLStore connects (lazily) to the site's database.
func OpenSQLStore(c DBConfig) (*SQLStore, error) {
	if c.Addr == "" || c.User == "" || c.PasswordFile == "" {
		return nil, errors.New("db: addr, user and passwordFile are required")
	}
	pw, err := fsutil.ReadSecret(c.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("db.passwordFile: %w", err)
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = c.User, pw, "tcp", c.Addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, storeTimeout, storeTimeout
	cfg.ParseTime = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(time.Minute)
	return &SQLStore{db: db}, nil
}

// Close closes the pool.
func (s *SQLStore) Close() error { return s.db.Close() }

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storeTimeout)
}

// Key implements Store.
func (s *SQLStore) Key(ctx context.Context, kid string) (*Key, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	k := &Key{KID: kid}
	var scope string
	err := s.db.QueryRowContext(ctx, "SELECT k.hmac_key, k.scope, EXISTS (SELECT 1 FROM "+RevocationsTable+" r WHERE r.kid = k.kid) FROM "+
		KeysTable+" k WHERE k.kid = ?", kid).Scan(&k.HMAC, &scope, &k.Revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k.Scope = namescope.Split(scope)
	return k, nil
}

// Registered implements Store.
func (s *SQLStore) Registered(ctx context.Context, digest string) (bool, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var id int64
	err := s.db.QueryRowContext(ctx, "SELECT id FROM "+accountsTable+" WHERE jwk_sha256 = ?", digest).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Binding implements Store.
func (s *SQLStore) Binding(ctx context.Context, accountID int64) (*Binding, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	b := &Binding{}
	var scope sql.NullString
	err := s.db.QueryRowContext(ctx, "SELECT b.kid, k.scope, k.kid IS NOT NULL, EXISTS (SELECT 1 FROM "+RevocationsTable+" r WHERE r.kid = b.kid) FROM "+
		BindingsTable+" b LEFT JOIN "+KeysTable+" k ON k.kid = b.kid WHERE b.account_id = ?", accountID).Scan(&b.KID, &scope, &b.KeyKnown, &b.Revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b.Scope = namescope.Split(scope.String)
	return b, nil
}

// Bind implements Store (binary-logged: it replicates to every peer).
func (s *SQLStore) Bind(ctx context.Context, accountID int64, kid string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	_, err := s.db.ExecContext(ctx, "INSERT IGNORE INTO "+BindingsTable+" (account_id, kid, bound_at) VALUES (?, ?, UTC_TIMESTAMP())", accountID, kid)
	return err
}
