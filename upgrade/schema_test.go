package upgrade

import (
	"context"
	"strings"
	"testing"
)

func cols(table string, names ...string) []column {
	var out []column
	for _, n := range names {
		out = append(out, column{Table: table, Name: n, Type: "int(11)", Nullable: "YES", Default: "NULL"})
	}
	return out
}

// Additions become statements with their undo; anything else is refused
// with the table and column named.
func TestSchemaChangesAreAdditionsOnly(t *testing.T) {
	live := schemaInfo{Columns: map[string][]column{"registrations": cols("registrations", "id", "jwk"), "orders": cols("orders", "id")},
		Indexes: map[string]map[string]string{"registrations": {"PRIMARY": "0 id"}}}
	next := schemaInfo{Columns: map[string][]column{"registrations": cols("registrations", "id", "jwk", "extra"), "orders": cols("orders", "id"), "fresh": cols("fresh", "id")},
		Indexes: map[string]map[string]string{"registrations": {"PRIMARY": "0 id", "extra_idx": "1 extra"}}}
	defs := map[string]string{"registrations": "registrations\tCREATE TABLE `registrations` (\\n  `id` int(11) NOT NULL,\\n  `jwk` int(11),\\n  `extra` int(11) DEFAULT NULL,\\n  PRIMARY KEY (`id`),\\n  KEY `extra_idx` (`extra`)\\n) ENGINE=InnoDB", "orders": ""}
	cs, err := schemaChanges("boulder_sa", "cairn_next_boulder_sa", live, next, defs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Do+" / "+c.Undo)
	}
	want := []string{
		"CREATE TABLE boulder_sa.`fresh` LIKE cairn_next_boulder_sa.`fresh` / DROP TABLE boulder_sa.`fresh`",
		"ALTER TABLE boulder_sa.`registrations` ADD COLUMN `extra` int(11) DEFAULT NULL AFTER `jwk` / ALTER TABLE boulder_sa.`registrations` DROP COLUMN `extra`",
		"ALTER TABLE boulder_sa.`registrations` ADD KEY `extra_idx` (`extra`) / ALTER TABLE boulder_sa.`registrations` DROP INDEX `extra_idx`",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A changed column.
	changed := next
	changed.Columns = map[string][]column{"registrations": cols("registrations", "id", "jwk")}
	changed.Columns["registrations"][1].Type = "bigint(20)"
	if _, err := schemaChanges("boulder_sa", "x", live, changed, defs); err == nil || !strings.Contains(err.Error(), "registrations`.jwk") || !strings.Contains(err.Error(), "by hand") {
		t.Errorf("changed column: %v", err)
	}
	// A column inserted before existing ones in registrations.
	early := next
	early.Columns = map[string][]column{"registrations": cols("registrations", "id", "early", "jwk")}
	if _, err := schemaChanges("boulder_sa", "x", live, early, defs); err == nil || !strings.Contains(err.Error(), "at the end") {
		t.Errorf("column before existing ones: %v", err)
	}
	// Columns the new schema dropped are kept: no statement.
	fewer := schemaInfo{Columns: map[string][]column{"registrations": cols("registrations", "id")}, Indexes: live.Indexes}
	if cs, err := schemaChanges("boulder_sa", "x", live, fewer, defs); err != nil || len(cs) != 0 {
		t.Errorf("dropped column: %v %v", cs, err)
	}
}

// sqlHost answers SiteSQL with canned outputs, one per call, and keeps
// the statements.
type sqlHost struct {
	Host
	answers [][]byte
	got     []string
}

func (h *sqlHost) SiteSQL(_ context.Context, _, statements string) ([]byte, error) {
	h.got = append(h.got, statements)
	if len(h.answers) == 0 {
		return nil, nil
	}
	a := h.answers[0]
	h.answers = h.answers[1:]
	return a, nil
}

// Every database's comparison is one command on the host (on a
// provisioned host each is an Ansible run), the new definitions a second
// only when a table gains something, each database's read apart even
// when both have a table of that name.
func TestSchemasComparedInOneRoundTrip(t *testing.T) {
	row := func(db, table, col string) string {
		return strings.Join([]string{"C", db, table, col, "int(11)", "YES", "(none)", ""}, "\t") + "\n"
	}
	same := row("boulder_sa", "registrations", "id") + row("cairn_next_boulder_sa", "registrations", "id") +
		row("incidents_sa", "registrations", "id") + row("cairn_next_incidents_sa", "registrations", "id")
	sqls := map[string]string{"boulder_sa": "CREATE DATABASE IF NOT EXISTS boulder_sa;\nUSE boulder_sa;\nCREATE TABLE registrations (id int);\n",
		"incidents_sa": "CREATE DATABASE IF NOT EXISTS incidents_sa;\nUSE incidents_sa;\nCREATE TABLE registrations (id int);\n"}
	dbs := []string{"boulder_sa", "incidents_sa"}

	h := &sqlHost{answers: [][]byte{[]byte(same)}}
	cs, err := diffDatabases(context.Background(), h, "a", dbs, sqls)
	if err != nil || len(cs) != 0 || len(h.got) != 1 {
		t.Fatalf("unchanged schemas: %v %v, %d commands, want none and one", cs, err, len(h.got))
	}
	for _, want := range []string{"CREATE DATABASE cairn_next_boulder_sa", "CREATE DATABASE cairn_next_incidents_sa", "'cairn_next_incidents_sa','incidents_sa'"} {
		if !strings.Contains(h.got[0], want) {
			t.Errorf("the one command lacks %q", want)
		}
	}

	// incidents_sa's registrations gains a column; boulder_sa's has a
	// definition of that name too, which must not be taken for it.
	gained := same + row("cairn_next_incidents_sa", "registrations", "extra")
	defs := defsOf + "boulder_sa\nregistrations\tCREATE TABLE `registrations` (\\n  `id` int(11),\\n  `wrong` int(11)\\n) ENGINE=InnoDB\n" +
		defsOf + "incidents_sa\nregistrations\tCREATE TABLE `registrations` (\\n  `id` int(11),\\n  `extra` int(11) DEFAULT NULL\\n) ENGINE=InnoDB\n"
	h = &sqlHost{answers: [][]byte{[]byte(gained), []byte(defs)}}
	cs, err = diffDatabases(context.Background(), h, "a", dbs, sqls)
	if err != nil || len(h.got) != 2 || len(cs) != 1 {
		t.Fatalf("a gained column: %+v %v, %d commands, want one change in two", cs, err, len(h.got))
	}
	if want := "ALTER TABLE incidents_sa.`registrations` ADD COLUMN `extra` int(11) DEFAULT NULL AFTER `id`"; cs[0].Do != want {
		t.Errorf("change %q, want %q", cs[0].Do, want)
	}
	if strings.Contains(h.got[1], "cairn_next_boulder_sa") {
		t.Errorf("definitions asked of a database that gained nothing: %s", h.got[1])
	}
}
