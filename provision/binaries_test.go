package provision

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/internal/testenv"
)

// cairn_binaries (the role's action plugin and module) puts the binaries
// in place, with cairn's directories; run again it changes nothing; a
// binary whose content or mode differs on the host is put right, and only
// it; a missing source is refused with its name.
func TestBinariesSentOnlyWhenTheyDiffer(t *testing.T) {
	testenv.Integration(t, "ansible-playbook")
	dir := t.TempDir()
	src, host := filepath.Join(dir, "src"), filepath.Join(dir, "host")
	os.MkdirAll(src, 0o755)
	for _, b := range []string{"one", "two", "three"} {
		os.WriteFile(filepath.Join(src, b), []byte("#!/bin/sh\necho "+b+"\n"), 0o755)
	}
	role, _ := filepath.Abs(filepath.Join("..", "ansible", "roles", "cairn_common"))
	play := filepath.Join(dir, "bin.yml")
	os.WriteFile(play, []byte(`---
- name: Binaries
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Install them
      cairn_binaries:
        src_dir: `+src+`
        names: "{{ names | default(['one', 'two', 'three']) }}"
        dest: `+host+`/opt/bin
        dirs: [`+host+`/opt, `+host+`/opt/site]
`), 0o644)
	// The JSON callback: the task's result as the module returned it.
	run := func(extra ...string) (changed bool, changes []string, out string, err error) {
		cmd := exec.Command("ansible-playbook", append([]string{"-i", "localhost,", play}, extra...)...)
		cmd.Env = append(os.Environ(), "ANSIBLE_LIBRARY="+filepath.Join(role, "library"), "ANSIBLE_ACTION_PLUGINS="+filepath.Join(role, "action_plugins"),
			"ANSIBLE_STDOUT_CALLBACK=json", "ANSIBLE_CALLBACKS_ENABLED=", "ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"))
		b, err := cmd.Output()
		out = string(b)
		var r struct {
			Plays []struct {
				Tasks []struct {
					Hosts map[string]struct {
						Changed bool
						Changes []string
					}
				}
			}
		}
		if jerr := json.Unmarshal(b, &r); jerr != nil || len(r.Plays) != 1 || len(r.Plays[0].Tasks) != 1 {
			t.Fatalf("ansible-playbook's JSON: %v (%v)\n%s", jerr, err, out)
		}
		res := r.Plays[0].Tasks[0].Hosts["localhost"]
		return res.Changed, res.Changes, out, err
	}
	changed, changes, out, err := run()
	if err != nil || !changed || len(changes) != 6 { // 3 directories, 3 binaries
		t.Fatalf("first run: changed %v %q %v\n%s", changed, changes, err, out)
	}
	for _, b := range []string{"one", "two", "three"} {
		got, _ := os.ReadFile(filepath.Join(host, "opt", "bin", b))
		fi, _ := os.Stat(filepath.Join(host, "opt", "bin", b))
		if string(got) != "#!/bin/sh\necho "+b+"\n" || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s on the host: %q %v", b, got, fi.Mode())
		}
	}
	if changed, changes, out, err := run(); err != nil || changed {
		t.Fatalf("second run changed %q (%v)\n%s", changes, err, out)
	}
	os.WriteFile(filepath.Join(host, "opt", "bin", "two"), []byte("tampered"), 0o755)
	os.Chmod(filepath.Join(host, "opt", "bin", "three"), 0o700)
	changed, changes, out, err = run()
	slices.Sort(changes)
	want := []string{host + "/opt/bin/three: owner/mode", host + "/opt/bin/two: written"}
	if err != nil || !changed || !slices.Equal(changes, want) {
		t.Fatalf("after tampering: changed %v %q, want %q (%v)\n%s", changed, changes, want, err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(host, "opt", "bin", "two")); !strings.Contains(string(got), "echo two") {
		t.Errorf("two not put right: %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(host, "opt", "bin", ".cairn-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if _, _, out, err := run("-e", `{"names": ["one", "missing"]}`); err == nil || !strings.Contains(out, "missing: no such binary on the controller") {
		t.Errorf("a missing source: %v\n%s", err, out)
	}
}
