package drill

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/lab"
)

// readmeSkips are the README's bin/cairn commands this test does not run,
// and why: each is run by another test or would end the shared lab.
var readmeSkips = map[string]string{
	"lab logs":  "follows logs until interrupted (lab tests read the logs)",
	"lab down":  "would stop the shared lab (every lab test ends with it)",
	"provision": "TestProvisionLocalEndToEnd runs it on namespace hosts",
}

// readmeCommands are the bin/cairn lines of the README's sh blocks, as a
// user copies them: comments dropped, placeholders (X, …) left out.
func readmeCommands(t *testing.T) (run []string) {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			in = line == "```sh"
			continue
		}
		if !in || !strings.HasPrefix(line, "bin/cairn ") {
			continue
		}
		if i := strings.Index(line, " #"); i > 0 {
			line = strings.TrimSpace(line[:i])
		}
		skip := strings.Contains(line, "…") || strings.Contains(line, " X/") || strings.Contains(line, "--dir X")
		for k := range readmeSkips {
			skip = skip || strings.Contains(line, k)
		}
		if !skip {
			run = append(run, line)
		}
	}
	return run
}

// printedCommands are the copy-paste client commands `lab up` prints
// under "Get a certificate through the ACME name", continuation lines
// joined.
func printedCommands(out string) []string {
	var cmds []string
	_, rest, ok := strings.Cut(out, "Get a certificate through the ACME name")
	if !ok {
		return nil
	}
	rest, _, _ = strings.Cut(rest, "\n\n")
	var cur string
	for _, line := range strings.Split(rest, "\n")[1:] {
		cur += strings.TrimSpace(strings.TrimSuffix(line, "\\")) + " "
		if !strings.HasSuffix(line, "\\") {
			cmds = append(cmds, strings.TrimSpace(cur))
			cur = ""
		}
	}
	return cmds
}

// readmeCheckout lays out a directory like a checkout after make lab:
// bin/cairn and bin/cairn-front (hard links of the test's build: cairn
// finds lego v5 in ../.tools/bin from where it was run), .tools/bin with
// lego v5 (not on PATH, as after make lab) and cairn-lab/, a link to the
// lab's spec directory. The lab starts with this bin/cairn, so the
// README's lab up finds every process's configuration as it left it.
func readmeCheckout(t *testing.T, specDir string) string {
	work := t.TempDir()
	for _, d := range []string{"bin", ".tools/bin"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	built := filepath.Dir(labtest.CairnBinary(t))
	for _, b := range []string{"cairn", "cairn-front"} {
		if err := os.Link(filepath.Join(built, b), filepath.Join(work, "bin", b)); err != nil {
			t.Fatal(err)
		}
	}
	lego5, err := acmecli.FindTool("lego5")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(lego5, filepath.Join(work, ".tools/bin/lego5")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(specDir, filepath.Join(work, "cairn-lab")); err != nil {
		t.Fatal(err)
	}
	return work
}

// testReadme runs the README's commands as written after `make lab` in
// work (readmeCheckout), then the lego (HTTP-01) and certbot
// (--standalone) commands `lab up` printed, each on its client host. It
// returns the site-down drill's report, which the caller judges like the
// other drills.
func testReadme(t *testing.T, l *lab.Lab, work string) (*Report, string) {
	// PATH as a user's: without the .tools/bin `make test` puts on it.
	var path []string
	for _, p := range filepath.SplitList(os.Getenv("PATH")) {
		if !strings.HasSuffix(p, ".tools/bin") {
			path = append(path, p)
		}
	}
	env := append(os.Environ(), "PATH="+strings.Join(path, ":"))
	sh := func(line string) string {
		t.Helper()
		// The README's lab is cairn init's, zone lab.home.arpa; this one's
		// zone is its own.
		line = strings.ReplaceAll(line, "lab.home.arpa", l.Spec.ACME.Zone)
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		// A drill that fails exits 1: its report says why (judged below).
		if err != nil && !strings.Contains(line, "drill run") {
			t.Logf("$ %s\n%s", line, out)
			t.Fatalf("README command %q: %v (its output above)", line, err)
		}
		t.Logf("$ %s\n%s", line, out)
		return string(out)
	}

	cmds := readmeCommands(t)
	for _, want := range []string{"lab status", "lab up", "lab exec --host web1 -- lego", "probe a --deep", "failover status", "drill list", "drill run site-down", "upgrade plan"} {
		found := false
		for _, c := range cmds {
			found = found || strings.Contains(c, want)
		}
		if !found {
			t.Errorf("the README no longer shows bin/cairn %s: update this test", want)
		}
	}
	var printed []string
	var eabLine string // eab.required: the line that makes a key into EAB_KID and EAB_HMAC
	for _, c := range cmds {
		out := sh(onEABLab(c, eabLine))
		if strings.Contains(c, "lab up") {
			// A second lab up on a running lab whose spec did not change
			// restarts nothing.
			if strings.Contains(out, "configuration changed") {
				t.Errorf("lab up on the running lab restarted processes:\n%s", out)
			}
			printed = printedCommands(out)
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), `eval "$(bin/cairn accounts eab create`) {
					eabLine = strings.TrimSpace(line)
				}
			}
		}
	}
	if l.Spec.EAB.Required != (eabLine != "") {
		t.Errorf("eab.required %v, yet lab up printed the command that makes a key: %q", l.Spec.EAB.Required, eabLine)
	}
	// HTTP-01 from client hosts first: the lab's validation reaches them.
	if len(printed) != 2 || !strings.Contains(printed[0], "lab exec --host web1 -- lego ") || !strings.Contains(printed[0], " --http ") ||
		!strings.Contains(printed[1], "lab exec --host web2 -- certbot certonly --standalone ") {
		t.Fatalf("lab up printed %q through the ACME name first, want lego --http on web1 and certbot --standalone on web2", printed)
	}
	for _, c := range printed {
		if eabLine != "" {
			c = eabLine + " && " + c
		}
		sh(c)
	}
	dir := filepath.Join(work, "drills/site-down")
	rep := readReport(t, dir)
	if len(rep.SkippedClients) > 0 {
		t.Errorf("site-down after make lab skipped real clients: %v", rep.SkippedClients)
	}
	return rep, dir
}

// onEABLab is a README client command (written for cairn init's lab,
// which does not require EAB) as a user of a lab with eab.required runs
// it: after the line lab up printed that makes a key, with the flags lab
// up's own commands show.
func onEABLab(line, eabLine string) string {
	switch {
	case eabLine == "" || !strings.Contains(line, " lab exec "):
		return line
	case strings.Contains(line, " lego ") && strings.HasSuffix(line, " run"):
		line = strings.TrimSuffix(line, " run") + ` --eab --kid "$EAB_KID" --hmac="$EAB_HMAC" run`
	case strings.Contains(line, " certbot "):
		line += ` --eab-kid "$EAB_KID" --eab-hmac-key="$EAB_HMAC"`
	default:
		return line
	}
	return eabLine + " && " + line
}
