package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"strings"
	"time"

	cairnansible "github.com/cairn-pki/cairn/ansible"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/site"
	"github.com/cairn-pki/cairn/upgrade"
)

// A provisioned cluster upgrades like the lab (upgrade.Apply), site by
// site: the bundle is re-rendered here, in the working directory, and
// installed on the site's host by the same Ansible play as `provision
// apply` (limited to that host, with the release's binaries and only the
// changed processes restarted); SQL runs on the host through `cairn site
// sql`; the controller and the deep probes are reached from the
// operator's vantage, as `cairn failover` and `cairn probe` are.

// UpgradeOptions are upgrade.Apply's options for the provisioned cluster
// (made with `provision apply` before).
func (p *Provisioner) UpgradeOptions(ctx context.Context) (upgrade.ApplyOptions, error) {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		return upgrade.ApplyOptions{}, fmt.Errorf("ansible-playbook not found on PATH: install ansible (scripts/deps.sh does)")
	}
	out, err := p.outputs(ctx)
	if err != nil {
		return upgrade.ApplyOptions{}, err
	}
	if _, err := os.Stat(p.path("bundles")); err != nil {
		return upgrade.ApplyOptions{}, fmt.Errorf("no provisioned bundles in %s: run `cairn provision apply` first", p.dir)
	}
	if err := writeFS(cairnansible.Files, ".", p.path("ansible")); err != nil {
		return upgrade.ApplyOptions{}, err
	}
	h := &upgradeHost{p: p, out: out}
	return upgrade.ApplyOptions{
		Options: upgrade.Options{Spec: p.o.Spec, Self: p.o.Self, Log: p.o.Log, TokenDir: hostTokenDir,
			Bundle: func(name string) string { return p.path("bundles", name) },
			Root:   func(string) string { return hostSite }},
		StateFile:  p.UpgradeStateFile(),
		Backups:    p.path("upgrade-backups"),
		Host:       h,
		Controller: &operatorController{p: p},
		Probe:      p.operatorProbe,
	}, nil
}

// UpgradeStateFile is where an upgrade of the provisioned cluster records
// its progress.
func (p *Provisioner) UpgradeStateFile() string { return p.path("upgrade-state.json") }

// upgradeHost is upgrade.Host over the provisioned hosts.
type upgradeHost struct {
	p   *Provisioner
	out *Outputs
}

// RestartComponents installs the site's re-rendered bundle (and its
// release's binaries) on its host and restarts the named processes there.
func (h *upgradeHost) RestartComponents(ctx context.Context, name string, names []string) error {
	b, err := site.ReadBundle(h.p.path("bundles", name))
	if err != nil {
		return err
	}
	if err := tarDir(h.p.path("bundles", name), h.p.path("archives", name+".tar.gz")); err != nil {
		return err
	}
	bin, err := h.p.releaseBinDir(ctx, b.BoulderVersion)
	if err != nil {
		return err
	}
	inv, err := h.inventory(name, map[string]any{"cairn_bin_dir": bin}, hostVars{"cairn_common_restart_only": names})
	if err != nil {
		return err
	}
	return h.p.playbook(ctx, inv, name)
}

// inventory writes a one-host inventory for site name (0600; the host's
// connection as provisioning found it, plus vars and host) and returns
// its path.
func (h *upgradeHost) inventory(name string, vars map[string]any, host hostVars) (string, error) {
	target, ok := h.out.Sites[name]
	if !ok {
		return "", fmt.Errorf("site %s has no provisioned host", name)
	}
	hv, err := h.p.siteVars(name, target)
	if err != nil {
		return "", err
	}
	maps.Copy(hv, host)
	if vars == nil {
		vars = map[string]any{}
	}
	path := h.p.path("upgrade-" + name + ".yml")
	return path, writeInventory(path, vars, map[string]map[string]hostVars{"sites": {name: hv}})
}

// SiteSQL runs statements on the site's host with `cairn site sql`
// (through Ansible, which already reaches every host).
func (h *upgradeHost) SiteSQL(ctx context.Context, name, statements string) ([]byte, error) {
	out, err := h.onHost(ctx, name, statements, "sql")
	if err != nil {
		return nil, err
	}
	return []byte(out + "\n"), nil
}

// CloseConnections has the site's ACME front close kept connections
// (`cairn site close-connections` on its host).
func (h *upgradeHost) CloseConnections(ctx context.Context, name string) error {
	_, err := h.onHost(ctx, name, "", "close-connections")
	return err
}

// onHost runs `cairn site <args> --bundle … --bin …` on the site's host
// with stdin, through an ad-hoc Ansible command, and returns its stdout.
func (h *upgradeHost) onHost(ctx context.Context, name, stdin string, args ...string) (string, error) {
	inv, err := h.inventory(name, nil, nil)
	if err != nil {
		return "", err
	}
	argv := append(append([]string{HostRoot + "/bin/cairn", "site"}, args...), "--bundle", hostSite, "--bin", HostRoot+"/bin")
	out, err := h.p.adhoc(ctx, inv, name, argv, stdin)
	if err != nil {
		return "", fmt.Errorf("site %s: cairn site %s: %w", name, args[0], err)
	}
	return out, nil
}

// adhoc runs argv on host (of inventory inv) with stdin through an
// ad-hoc Ansible command, and returns its stdout; its error is the
// command's first line of stderr.
func (p *Provisioner) adhoc(ctx context.Context, inv, host string, argv []string, stdin string) (string, error) {
	margs, _ := json.Marshal(map[string]any{"argv": argv, "stdin": stdin, "stdin_add_newline": false})
	cmd := p.ansibleCmd(ctx, "ansible", "-i", inv, host, "-m", "ansible.builtin.command", "-a", string(margs))
	// The json callback alone writes stdout: an operator's
	// ANSIBLE_CALLBACKS_ENABLED (profile_tasks, timer) would add lines.
	cmd.Env = append(cmd.Env, "ANSIBLE_LOAD_CALLBACK_PLUGINS=1", "ANSIBLE_STDOUT_CALLBACK=json", "ANSIBLE_CALLBACKS_ENABLED=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res struct {
		Plays []struct {
			Tasks []struct {
				Hosts map[string]struct {
					RC     int    `json:"rc"`
					Stdout string `json:"stdout"`
					Stderr string `json:"stderr"`
					Msg    string `json:"msg"`
				} `json:"hosts"`
			} `json:"tasks"`
		} `json:"plays"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Plays) == 0 || len(res.Plays[0].Tasks) == 0 {
		why := cluster.FirstLine(stderr.String())
		if why == "" {
			why = "unreadable output: " + cluster.FirstLine(stdout.String())
		}
		if runErr != nil {
			why = runErr.Error() + ": " + why
		}
		return "", fmt.Errorf("through ansible: %s", why)
	}
	r, ok := res.Plays[0].Tasks[0].Hosts[host]
	if !ok {
		return "", fmt.Errorf("ansible did not reach the host: %s", cluster.FirstLine(stderr.String()))
	}
	if r.RC != 0 || runErr != nil {
		msg := r.Stderr
		if msg == "" {
			msg = r.Msg
		}
		return r.Stdout, errors.New(cluster.FirstLine(msg))
	}
	return r.Stdout, nil
}

// releaseBinDir is the directory of links to the binaries a host on
// Boulder release version gets: that release's boulder, the pinned
// release's tools, this cairn.
func (p *Provisioner) releaseBinDir(ctx context.Context, version string) (string, error) {
	bins, err := boulderbin.Ensure(ctx, p.o.Log, "boulder", "ct-test-srv", "s3-test-srv", "admin")
	if err != nil {
		return "", err
	}
	if version == "" || version == boulderbin.Version {
		return p.linkBinaries(bins, "bin")
	}
	rel, err := boulderbin.EnsureVersion(ctx, p.o.Log, version, "boulder")
	if err != nil {
		return "", err
	}
	bins["boulder"] = rel["boulder"]
	return p.linkBinaries(bins, "bin-"+version)
}

// operatorController is the controller's API from the operator's vantage
// (`cairn failover`, through Infrastructure.FromOperator).
type operatorController struct{ p *Provisioner }

func (c *operatorController) cli(ctx context.Context, args ...string) ([]byte, error) {
	return c.p.operatorCLI(ctx, 30*time.Second, args...)
}

// operatorCLI runs `cairn -o json ARGS` from the operator's vantage and
// returns its standard output (also when it fails).
func (p *Provisioner) operatorCLI(ctx context.Context, timeout time.Duration, args ...string) ([]byte, error) {
	argv := p.infra.FromOperator(append([]string{p.o.Self, "-f", p.o.Spec.File, "-o", "json"}, args...))
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("cairn %s: %v: %s", strings.Join(args, " "), err, cluster.FirstLine(stderr.String()))
	}
	return out, nil
}

func (c *operatorController) Status(ctx context.Context) (failover.Status, error) {
	var st failover.Status
	out, err := c.cli(ctx, "failover", "status")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(out, &st)
}

func (c *operatorController) Drain(ctx context.Context, s string) error {
	_, err := c.cli(ctx, "failover", "drain", s)
	return err
}

func (c *operatorController) Undrain(ctx context.Context, s string) error {
	_, err := c.cli(ctx, "failover", "undrain", s)
	return err
}

func (c *operatorController) Move(ctx context.Context, to string) error {
	_, err := c.cli(ctx, "failover", "move", "--to", to)
	return err
}

// operatorProbe is one gate round with `cairn probe` from the operator's
// vantage.
func (p *Provisioner) operatorProbe(ctx context.Context, name string) []healthcheck.Result {
	out, err := p.operatorCLI(ctx, 2*time.Minute, "probe", name, "--kinds", strings.Join(upgrade.GateKinds, ","))
	var rs []healthcheck.Result
	if jerr := json.Unmarshal(out, &rs); jerr != nil || len(rs) == 0 {
		// cairn probe exits non-zero when a probe failed: only output
		// that is not a result list is an error of the probe itself.
		return []healthcheck.Result{{Site: name, Kind: "probe", Steps: []healthcheck.Step{{Name: "cairn probe", Detail: cluster.FirstLine(errors.Join(err, jerr).Error())}}}}
	}
	return rs
}
