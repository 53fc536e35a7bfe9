package hostrun

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// DBOSUser is the --user MariaDB runs as when cairn starts it itself (the
// lab, `cairn site run`; "" = whoever runs cairn). It refuses root unless
// told so explicitly. As root, a lab's MariaDB runs as root too, like every
// other lab component: the lab may live in a 0700 directory (a home
// directory) that the mysql user cannot reach, and a loopback lab gains
// nothing from one unprivileged component next to a root CA holding its
// HSM PIN. Provisioned hosts run it as mysql (ansible/roles/cairn_common).
func DBOSUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return ""
}

// dbAdmin is the database account with socket authentication that
// mariadb-install-db creates for whoever runs it.
func dbAdmin() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// InitDBDir creates the datadir once with mariadb-install-db, for MariaDB
// running as osUser ("" = whoever runs this). For a user other than root
// (systemd hosts run it as mysql) the database's directory and TLS key
// become that user's.
func InitDBDir(ctx context.Context, db site.Database, osUser string) error {
	mysqlDir := filepath.Dir(db.DataDir)
	for _, d := range []string{"run", "log", "tmp", "binlog", "relay"} {
		if err := os.MkdirAll(filepath.Join(mysqlDir, d), 0o750); err != nil {
			return err
		}
	}
	if osUser != "" && osUser != "root" {
		for _, p := range []string{mysqlDir, db.TLSKey} {
			if p == "" {
				continue
			}
			if out, err := exec.CommandContext(ctx, "chown", "-R", osUser+":"+osUser, p).CombinedOutput(); err != nil {
				return fmt.Errorf("chown %s: %v: %s", p, err, out)
			}
		}
	}
	if fsutil.Exists(filepath.Join(db.DataDir, "mysql")) {
		return nil
	}
	args := []string{"--defaults-file=" + db.Config, "--datadir=" + db.DataDir, "--auth-root-authentication-method=socket", "--skip-test-db"}
	if osUser != "" {
		args = append(args, "--user="+osUser)
	}
	cmd := exec.CommandContext(ctx, "mariadb-install-db", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(db.DataDir) // a half-made datadir would be taken as done next time
		// MariaDB writes its reasons to log-error, not to the output.
		logged, _ := os.ReadFile(filepath.Join(mysqlDir, "log", "mariadb.err"))
		return fmt.Errorf("mariadb-install-db: %v: %s %s", err, errorLines(out), errorLines(logged))
	}
	return nil
}

// adminCmd is the mariadb client as the site's local administrator, over
// the socket; nothing it runs goes to the binary log (peers replicate
// accounts, not schema, users or connections).
func adminCmd(ctx context.Context, db site.Database, args ...string) *exec.Cmd {
	base := []string{"--defaults-file=" + db.Config, "-u", dbAdmin(), "--init-command=SET SESSION sql_log_bin=0"}
	if sock, ok := unitSocket(db); ok {
		base = append(base, "--socket="+sock)
	}
	return exec.CommandContext(ctx, "mariadb", append(base, args...)...)
}

// unitSocket is where the site MariaDB's socket is for a client outside
// its systemd unit: the unit mounts its state directory
// /var/lib/cairn-mariadb/mysql over the bundle's var/mysql for itself
// alone (ansible cairn_common), so outside it the bundle's path is
// empty. ok is false where the bundle's path is the socket (under
// cairn's supervisor, or inside the unit).
func unitSocket(db site.Database) (string, bool) {
	varMySQL := filepath.Dir(db.DataDir) // <bundle>/var/mysql
	if fsutil.Exists(filepath.Join(varMySQL, "run", "mysqld.sock")) {
		return "", false
	}
	sock := filepath.Join("/var/lib", "cairn-mariadb", filepath.Base(varMySQL), "run", "mysqld.sock")
	return sock, fsutil.Exists(sock)
}

// LoadDB loads Boulder's schema once and (re)applies the users, grants and
// replication connections. None of it goes to the binary log: peers
// replicate accounts, not each other's schema or users.
func LoadDB(ctx context.Context, db site.Database) error {
	sql := func(stdin []byte, args ...string) ([]byte, error) {
		cmd := adminCmd(ctx, db, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		return cmd.CombinedOutput()
	}
	if _, err := sql(nil, "-e", "SELECT 1 FROM "+db.CheckTable+" LIMIT 1"); err != nil {
		for _, f := range db.SchemaSQL {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			if out, err := sql(b); err != nil {
				return fmt.Errorf("load schema %s: %v: %s", filepath.Base(f), err, LastLines(out, 3))
			}
		}
	}
	users, err := fsutil.ReadSecret(db.UsersSQL)
	if err != nil {
		return err
	}
	if out, err := sql([]byte(users)); err != nil {
		// The output may echo SQL with passwords: report only the error line.
		return fmt.Errorf("create database users: %v: %s", err, firstLine(out))
	}
	if db.ReplicationSQL == "" {
		return nil // a bundle rendered before account replication
	}
	if err := dropConnections(ctx, db); err != nil {
		return err
	}
	repl, err := fsutil.ReadSecret(db.ReplicationSQL)
	if err != nil {
		return err
	}
	if out, err := sql([]byte(repl)); err != nil {
		return fmt.Errorf("account replication users and connections: %v: %s", err, firstLine(out))
	}
	return nil
}

// dropConnections removes the replication connections the bundle does not
// name (replication switched off, a peer gone from the spec), with their
// relay logs; their positions stay in gtid_slave_pos.
func dropConnections(ctx context.Context, db site.Database) error {
	out, err := adminCmd(ctx, db, "-B", "-e", "SHOW ALL SLAVES STATUS").CombinedOutput()
	if err != nil {
		return fmt.Errorf("SHOW ALL SLAVES STATUS: %v: %s", err, firstLine(out))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return nil
	}
	col := slices.Index(strings.Split(lines[0], "\t"), "Connection_name")
	if col < 0 {
		return fmt.Errorf("SHOW ALL SLAVES STATUS has no Connection_name column")
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if col >= len(f) || slices.Contains(db.Connections, strings.ToLower(f[col])) {
			continue
		}
		name := strings.ReplaceAll(f[col], "'", "")
		stmt := fmt.Sprintf("STOP SLAVE '%s'; RESET SLAVE '%s' ALL", name, name)
		if out, err := adminCmd(ctx, db, "-e", stmt).CombinedOutput(); err != nil {
			return fmt.Errorf("remove replication connection %q: %v: %s", name, err, firstLine(out))
		}
	}
	return nil
}

// LastLines is the last n lines of a command's output on one line, for
// one-line errors.
func LastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// errorLines keeps MariaDB's [ERROR] lines (its output ends in advice).
func errorLines(b []byte) string {
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "ERROR") || strings.Contains(l, "Can't") || strings.Contains(l, "failed") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		return LastLines(b, 5)
	}
	return strings.Join(keep, " | ")
}

// firstLine is the client's ERROR line, else its first line, any secret
// in it cut off.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "ERROR") {
			s = strings.TrimSpace(l)
			break
		}
	}
	for _, secret := range []string{"IDENTIFIED BY", "MASTER_PASSWORD"} {
		if i := strings.Index(s, secret); i >= 0 {
			s = s[:i] + "…"
		}
	}
	return s
}

// AdminScript runs script (SQL statements on standard input: any length,
// and off the world-readable command line) as the site's local
// administrator, not logged to the binary log, and returns its output:
// rows tab-separated, no column names.
func AdminScript(ctx context.Context, db site.Database, script string) ([]byte, error) {
	cmd := adminCmd(ctx, db, "-N", "-B")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("mariadb: %v: %s", err, firstLine(out))
	}
	return out, nil
}

// AdminSQL runs the mariadb client with args as the site's local
// administrator (over the socket, not logged to the binary log) and
// returns its output. An error carries the client's first output line,
// any secret in it cut off.
func AdminSQL(ctx context.Context, db site.Database, args ...string) ([]byte, error) {
	out, err := adminCmd(ctx, db, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("mariadb: %v: %s", err, firstLine(out))
	}
	return out, nil
}
