package upgrade

import (
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
