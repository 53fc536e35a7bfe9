package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// Boulder ships its schema whole (sa/db/01-boulder_sa.sql), not as
// migrations, and changes it only additively ahead of the code that uses
// it. Migrate therefore compares the schema the site runs with the one its
// re-rendered bundle carries (loaded into a scratch database next to it)
// and applies what was added — tables, columns at the end, indexes —
// refusing anything else (a changed or moved column) with the table and
// column named: that needs a hand-written migration. A statement that fails
// undoes the ones before it. Additions stay when a site rolls back: the
// previous release ignores them.
//
// A change to `registrations` is applied at every site, with account
// replication stopped at each and the statements kept out of the binary
// log, then replication restarted (docs/accounts.md): row replication of
// a table breaks when its columns differ between sites.

// change is one schema statement and its undo.
type change struct {
	Table string
	Do    string
	Undo  string
}

// column is one column as information_schema describes it.
type column struct {
	Table, Name, Type, Nullable, Default, Extra string
}

// schemaInfo is one database's tables, columns (in order) and indexes.
type schemaInfo struct {
	Columns map[string][]column          // table -> columns in order
	Indexes map[string]map[string]string // table -> index -> "unique cols"
}

// Migrate applies to the site's database what its bundle's schema adds.
func Migrate(ctx context.Context, h Host, spec *cluster.Spec, siteName, bundleDir string, log io.Writer) error {
	b, err := site.ReadBundle(bundleDir)
	if err != nil {
		return err
	}
	// The scratch databases stay until the changes are applied: new
	// tables are created LIKE theirs. One round trip drops them all.
	var dbs []string
	defer func() {
		var drops []string
		for _, db := range dbs {
			drops = append(drops, "DROP DATABASE IF EXISTS "+scratchOf(db)+";")
		}
		if len(drops) > 0 {
			h.SiteSQL(context.WithoutCancel(ctx), siteName, strings.Join(drops, " "))
		}
	}()
	sqls := map[string]string{}
	for _, f := range b.Database.SchemaSQL {
		sql, err := os.ReadFile(filepath.Join(bundleDir, "sql", filepath.Base(f)))
		if err != nil {
			return fmt.Errorf("schema: %w", err)
		}
		db := dbOf(string(sql))
		if db == "" {
			return fmt.Errorf("schema: %s names no database", filepath.Base(f))
		}
		if _, ok := sqls[db]; ok {
			return fmt.Errorf("schema: %s names database %s, as an earlier file does: give each database one schema file (re-render the bundle)", filepath.Base(f), db)
		}
		sqls[db] = string(sql)
		dbs = append(dbs, db)
	}
	all, err := diffDatabases(ctx, h, siteName, dbs, sqls)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		fmt.Fprintf(log, "site %s: schema: nothing to migrate\n", siteName)
		return nil
	}
	var regs, local []change
	for _, c := range all {
		if c.Table == site.ReplicatedTable {
			regs = append(regs, c)
		} else {
			local = append(local, c)
		}
	}
	if len(regs) > 0 {
		replicated := len(b.Database.Connections) > 0
		sites := []string{siteName}
		if replicated {
			sites = spec.SiteNames() // every site, replication paused
		}
		if err := applyReplicated(ctx, h, sites, regs, replicated, log); err != nil {
			return err
		}
	}
	return applyChanges(ctx, h, siteName, local, log)
}

var useRE = regexp.MustCompile(`(?m)^USE (\w+);\s*$`)

func dbOf(sql string) string {
	if m := useRE.FindStringSubmatch(sql); m != nil {
		return m[1]
	}
	return ""
}

// scratchOf is the scratch database the new schema of db is loaded into.
func scratchOf(db string) string { return "cairn_next_" + db }

// defsOf starts the line that names the database whose definitions
// follow in diffDatabases' second round trip.
const defsOf = "-- definitions of "

var dbLineRE = regexp.MustCompile(`(?m)^(CREATE DATABASE IF NOT EXISTS \w+|USE \w+);\s*$`)

// diffDatabases loads each database's target schema into a scratch
// database (cairn_next_<db>; the caller drops them) and compares it with
// the live one. On a provisioned host every round trip is a remote
// command: one loads and describes them all, a second (only when a table
// gains a column or an index) shows the new definitions.
func diffDatabases(ctx context.Context, h Host, siteName string, dbs []string, sqls map[string]string) ([]change, error) {
	var q strings.Builder
	var names []string
	for _, db := range dbs {
		scratch := scratchOf(db)
		fmt.Fprintf(&q, "DROP DATABASE IF EXISTS %[1]s; CREATE DATABASE %[1]s; USE %[1]s;\n%[2]s\n", scratch, dbLineRE.ReplaceAllString(sqls[db], ""))
		names = append(names, "'"+scratch+"'", "'"+db+"'")
	}
	in := strings.Join(names, ",")
	fmt.Fprintf(&q, "SELECT 'C', TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, IFNULL(COLUMN_DEFAULT,'(none)'), EXTRA FROM information_schema.COLUMNS "+
		"WHERE TABLE_SCHEMA IN (%[1]s) ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION;\n"+
		"SELECT 'I', TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS "+
		"WHERE TABLE_SCHEMA IN (%[1]s) GROUP BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE;", in)
	out, err := h.SiteSQL(ctx, siteName, q.String())
	if err != nil {
		return nil, fmt.Errorf("load the new schemas into cairn_next_* and compare: %w", err)
	}
	schemas, err := parseSchemas(out)
	if err != nil {
		return nil, err
	}
	// Definitions only of the tables that gain a column or an index, each
	// database's after a line naming it (two may have a table of one name).
	var shows []string
	for _, db := range dbs {
		scratch := scratchOf(db)
		live, next := schemas[db], schemas[scratch]
		var tables []string
		for t := range next.Columns {
			if _, ok := live.Columns[t]; ok && gains(live, next, t) {
				tables = append(tables, fmt.Sprintf("SHOW CREATE TABLE %s.`%s`;", scratch, t))
			}
		}
		if len(tables) > 0 {
			sort.Strings(tables)
			shows = append(append(shows, fmt.Sprintf("SELECT '%s%s';", defsOf, db)), tables...)
		}
	}
	defs := map[string]map[string]string{} // db -> table -> definition
	if len(shows) > 0 {
		out, err := h.SiteSQL(ctx, siteName, strings.Join(shows, "\n"))
		if err != nil {
			return nil, err
		}
		var cur string
		for _, l := range lines(out) {
			if db, ok := strings.CutPrefix(l, defsOf); ok {
				cur, defs[db] = db, map[string]string{}
				continue
			}
			if name, def, ok := strings.Cut(l, "\t"); ok && cur != "" {
				defs[cur][name] = def
			}
		}
	}
	var all []change
	for _, db := range dbs {
		ch, err := schemaChanges(db, scratchOf(db), schemas[db], schemas[scratchOf(db)], defs[db])
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", db, err)
		}
		all = append(all, ch...)
	}
	return all, nil
}

// gains says whether next has a column or an index of table t that live
// has not.
func gains(live, next schemaInfo, t string) bool {
	have := map[string]bool{}
	for _, c := range live.Columns[t] {
		have[c.Name] = true
	}
	for _, c := range next.Columns[t] {
		if !have[c.Name] {
			return true
		}
	}
	for n := range next.Indexes[t] {
		if _, ok := live.Indexes[t][n]; !ok {
			return true
		}
	}
	return false
}

// parseSchemas reads the rows of diffDatabase's two SELECTs, by schema.
func parseSchemas(out []byte) (map[string]schemaInfo, error) {
	m := map[string]schemaInfo{}
	get := func(db string) schemaInfo {
		s, ok := m[db]
		if !ok {
			s = schemaInfo{Columns: map[string][]column{}, Indexes: map[string]map[string]string{}}
			m[db] = s
		}
		return s
	}
	for _, l := range lines(out) {
		f := strings.Split(l, "\t")
		switch {
		case len(f) == 8 && f[0] == "C":
			s := get(f[1])
			s.Columns[f[2]] = append(s.Columns[f[2]], column{Table: f[2], Name: f[3], Type: f[4], Nullable: f[5], Default: f[6], Extra: f[7]})
		case len(f) == 6 && f[0] == "I":
			s := get(f[1])
			if s.Indexes[f[2]] == nil {
				s.Indexes[f[2]] = map[string]string{}
			}
			s.Indexes[f[2]][f[3]] = f[4] + " " + f[5]
		default:
			return nil, fmt.Errorf("information_schema: unexpected row %q", cluster.FirstLine(l))
		}
	}
	return m, nil
}

func lines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// schemaChanges is what turns live into next, additions only. defs holds
// `SHOW CREATE TABLE` of next's tables that live has too (the client's
// batch output: newlines written as \n).
func schemaChanges(db, scratch string, live, next schemaInfo, defs map[string]string) ([]change, error) {
	var out []change
	tables := make([]string, 0, len(next.Columns))
	for t := range next.Columns {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		q := fmt.Sprintf("%s.`%s`", db, t)
		cols, ok := live.Columns[t]
		if !ok {
			out = append(out, change{Table: db + "." + t, Do: fmt.Sprintf("CREATE TABLE %s LIKE %s.`%s`", q, scratch, t), Undo: "DROP TABLE " + q})
			continue
		}
		def := strings.Split(defs[t], `\n`)
		have := map[string]column{}
		for _, c := range cols {
			have[c.Name] = c
		}
		prev := ""
		for i, c := range next.Columns[t] {
			old, ok := have[c.Name]
			switch {
			case ok && (old.Type != c.Type || old.Nullable != c.Nullable || old.Default != c.Default || old.Extra != c.Extra):
				return nil, fmt.Errorf("%s.%s changes (%s → %s): not an addition; migrate it by hand, then run the upgrade again", q, c.Name, old.Type, c.Type)
			case ok:
			case i < len(cols) && db+"."+t == site.ReplicatedTable:
				return nil, fmt.Errorf("%s gains column %s before existing ones: row replication of registrations needs new columns at the end; migrate it by hand", q, c.Name)
			default:
				line := defLine(def, "`"+c.Name+"` ")
				if line == "" {
					return nil, fmt.Errorf("%s.%s: no definition in SHOW CREATE TABLE", q, c.Name)
				}
				do := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s", q, line)
				if prev != "" {
					do += " AFTER `" + prev + "`"
				}
				out = append(out, change{Table: db + "." + t, Do: do, Undo: fmt.Sprintf("ALTER TABLE %s DROP COLUMN `%s`", q, c.Name)})
			}
			prev = c.Name
		}
		names := make([]string, 0, len(next.Indexes[t]))
		for n := range next.Indexes[t] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			old, ok := live.Indexes[t][n]
			switch {
			case ok && old != next.Indexes[t][n]:
				return nil, fmt.Errorf("%s index %s changes: not an addition; migrate it by hand", q, n)
			case ok:
			default:
				line := defLine(def, "KEY `"+n+"` (")
				if line == "" {
					return nil, fmt.Errorf("%s index %s: no definition in SHOW CREATE TABLE", q, n)
				}
				out = append(out, change{Table: db + "." + t, Do: fmt.Sprintf("ALTER TABLE %s ADD %s", q, line), Undo: fmt.Sprintf("ALTER TABLE %s DROP INDEX `%s`", q, n)})
			}
		}
	}
	return out, nil
}

// defLine finds the line of a CREATE TABLE that defines a column or an
// index, without its trailing comma.
func defLine(def []string, want string) string {
	for _, l := range def {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, want) || strings.HasPrefix(l, "UNIQUE "+want) {
			return strings.TrimSuffix(l, ",")
		}
	}
	return ""
}

// applyChanges runs the changes at one site, undoing the applied ones if
// one fails.
func applyChanges(ctx context.Context, h Host, siteName string, cs []change, log io.Writer) error {
	for i, c := range cs {
		if _, err := h.SiteSQL(ctx, siteName, c.Do); err != nil {
			undo := undoChanges(context.WithoutCancel(ctx), h, siteName, cs[:i])
			return errors.Join(fmt.Errorf("site %s: schema: %s: %w (undone)", siteName, cluster.FirstLine(c.Do), err), undo)
		}
		fmt.Fprintf(log, "site %s: schema: %s\n", siteName, c.Do)
	}
	return nil
}

func undoChanges(ctx context.Context, h Host, siteName string, done []change) error {
	var errs []error
	for _, c := range slices.Backward(done) {
		if _, err := h.SiteSQL(ctx, siteName, c.Undo); err != nil {
			errs = append(errs, fmt.Errorf("site %s: undo %s: %w", siteName, cluster.FirstLine(c.Undo), err))
		}
	}
	return errors.Join(errs...)
}

// applyReplicated applies changes to `registrations` at every site with
// account replication stopped at each, and starts replication again
// whatever happened. A failure undoes the change at the sites done.
func applyReplicated(ctx context.Context, h Host, sites []string, cs []change, replicated bool, log io.Writer) (err error) {
	if replicated {
		for _, s := range sites {
			if _, err := h.SiteSQL(ctx, s, "STOP ALL SLAVES"); err != nil {
				return fmt.Errorf("pause account replication: %w", err)
			}
			fmt.Fprintf(log, "site %s: account replication paused for a registrations schema change\n", s)
		}
		defer func() {
			for _, s := range sites {
				if _, e := h.SiteSQL(context.WithoutCancel(ctx), s, "START ALL SLAVES"); e != nil {
					err = errors.Join(err, fmt.Errorf("resume account replication: %w", e))
				} else {
					fmt.Fprintf(log, "site %s: account replication resumed\n", s)
				}
			}
		}()
	}
	for i, s := range sites {
		if err := applyChanges(ctx, h, s, cs, log); err != nil {
			var undo []error
			for _, d := range sites[:i] {
				undo = append(undo, undoChanges(context.WithoutCancel(ctx), h, d, cs))
			}
			return errors.Join(append([]error{err}, undo...)...)
		}
	}
	return nil
}
