package hostrun

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// BackupDB writes a consistent physical backup of the site's database to
// w: MariaDB's own hot backup (mariadb-backup --backup --stream=xbstream:
// InnoDB pages copied while the server keeps writing, with the redo log
// that makes the copy consistent at one point), gzip-compressed. The
// server keeps serving; nothing is written to the site's disk but
// mariadb-backup's scratch files under the database's tmp directory.
//
// On a systemd host the site agent has no access to MariaDB's files: it
// asks the socket-activated unit cairn-db-backup (DBBackupSocket, its
// user's alone), which runs `cairn site backup-stream` as MariaDB's user
// and streams the same.
func BackupDB(ctx context.Context, db site.Database, w io.Writer) error {
	if fsutil.Exists(DBBackupSocket) {
		return backupThroughSocket(ctx, w)
	}
	return BackupDBHere(ctx, db, w)
}

// BackupDBHere is BackupDB by running mariadb-backup in this process's
// view of the host (what `cairn site backup-stream` does in the unit).
func BackupDBHere(ctx context.Context, db site.Database, w io.Writer) error {
	tmp, err := os.MkdirTemp(filepath.Join(mysqlDir(db), "tmp"), "backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	args := []string{"--defaults-file=" + db.Config, "--backup", "--stream=xbstream", "--target-dir=" + tmp, "--user=" + dbAdmin()}
	if sock, ok := unitSocket(db); ok {
		// Outside the systemd unit the bundle's datadir is empty: the
		// unit's state directory holds it.
		args = append(args, "--socket="+sock, "--datadir="+filepath.Join(filepath.Dir(filepath.Dir(sock)), "data"))
	}
	zw := gzip.NewWriter(w)
	cmd := exec.CommandContext(ctx, "mariadb-backup", args...)
	var stderr tailBuffer
	cmd.Stdout, cmd.Stderr = zw, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mariadb-backup --backup: %v: %s", err, stderr.lastLines(3))
	}
	return zw.Close()
}

// DBBackupSocket is where a systemd site host's cairn-db-backup.socket
// listens (ansible role boulder): a connection gets one backup.
const DBBackupSocket = "/run/cairn-db-backup/backup.sock"

// backupThroughSocket copies the backup cairn-db-backup streams to w,
// checking that the gzip stream is whole: the unit ends it without its
// trailer when mariadb-backup fails.
func backupThroughSocket(ctx context.Context, w io.Writer) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", DBBackupSocket)
	if err != nil {
		return fmt.Errorf("the database backup unit: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	pr, pw := io.Pipe()
	whole := make(chan error, 1)
	go func() {
		zr, err := gzip.NewReader(pr)
		if err == nil {
			_, err = io.Copy(io.Discard, zr)
		}
		io.Copy(io.Discard, pr)
		whole <- err
	}()
	_, err = io.Copy(io.MultiWriter(w, pw), c)
	pw.CloseWithError(err)
	if werr := <-whole; err == nil && werr != nil {
		err = fmt.Errorf("the backup stream from cairn-db-backup is cut short or corrupt (%v): its log is var/logs/db-backup.log on the site", werr)
	}
	return err
}

// RestoreInfo is what a restored backup says about itself.
type RestoreInfo struct {
	// GTID is the database's binary log position when the backup was
	// consistent (xtrabackup_binlog_info), "" if it had none.
	GTID string
}

// RestoreDB puts the backup in r (BackupDB's output) into the site's
// empty datadir: unpacked and prepared (the redo log applied) beside it,
// then moved in, so a failed restore leaves no half-made datadir. The
// database must not be running; a datadir that holds a database is
// refused (a rebuild is for a site whose disk is gone).
func RestoreDB(ctx context.Context, db site.Database, r io.Reader) (RestoreInfo, error) {
	var info RestoreInfo
	if fsutil.Exists(filepath.Join(db.DataDir, "mysql")) {
		return info, fmt.Errorf("%s holds a database: restore only into a site whose database is gone (move it away first)", db.DataDir)
	}
	dir := mysqlDir(db)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o750); err != nil {
		return info, err
	}
	work, err := os.MkdirTemp(dir, "restore-")
	if err != nil {
		return info, err
	}
	defer os.RemoveAll(work)
	zr, err := gzip.NewReader(r)
	if err != nil {
		return info, fmt.Errorf("the backup is not gzip data: %w", err)
	}
	x := exec.CommandContext(ctx, "mbstream", "-x", "-C", work)
	var stderr tailBuffer
	x.Stdin, x.Stderr = zr, &stderr
	if err := x.Run(); err != nil {
		return info, fmt.Errorf("mbstream -x: %v: %s", err, stderr.lastLines(3))
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return info, fmt.Errorf("the backup is truncated or corrupt: %w", err)
	}
	if !fsutil.Exists(filepath.Join(work, "xtrabackup_checkpoints")) {
		return info, errors.New("the backup holds no mariadb-backup checkpoint: not a cairn database backup")
	}
	run := func(args ...string) error {
		var out tailBuffer
		c := exec.CommandContext(ctx, "mariadb-backup", args...)
		c.Stdout, c.Stderr = &out, &out
		if err := c.Run(); err != nil {
			return fmt.Errorf("mariadb-backup %s: %v: %s", args[0], err, out.lastLines(3))
		}
		return nil
	}
	if err := run("--prepare", "--target-dir="+work); err != nil {
		return info, err
	}
	if b, err := os.ReadFile(filepath.Join(work, "xtrabackup_binlog_info")); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			info.GTID = f[2]
		}
	}
	if err := os.RemoveAll(db.DataDir); err != nil {
		return info, err
	}
	if err := run("--defaults-file="+db.Config, "--move-back", "--target-dir="+work, "--datadir="+db.DataDir); err != nil {
		os.RemoveAll(db.DataDir)
		return info, err
	}
	return info, nil
}

// mysqlDir is <bundle>/var/mysql, the parent of the datadir.
func mysqlDir(db site.Database) string { return filepath.Dir(db.DataDir) }

// tailBuffer keeps the last 16 KiB written to it (mariadb-backup's log is
// long; its reason is at the end).
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 16<<10 {
		t.b = t.b[len(t.b)-16<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) lastLines(n int) string {
	return LastLines(bytes.TrimSpace(t.b), n)
}
