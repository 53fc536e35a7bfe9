package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/upgrade"
)

// Components is what process faults act on: a cluster's components by
// site and name. The lab implements it; provisioned hosts can too.
type Components interface {
	SignalComponent(site, component string, sig syscall.Signal) (int, error)
	StartComponent(ctx context.Context, site, component string) error
	StopComponent(site, component string) error
	ComponentRunning(site, component string) bool
}

// Infra is what a drill acts through: the cluster's spec, its
// components and each site's database. The lab implements it (and the
// optional ClientHosts, SiteLoss and Releases); the tests use a fake.
type Infra interface {
	Components
	DBExec(ctx context.Context, site, statements string) error
	ClusterSpec() *cluster.Spec
}

// ClientHosts is an infrastructure's client hosts: a host of its own, in
// the cluster's DNS, for each real client that answers HTTP-01 or
// TLS-ALPN-01 on its own name.
type ClientHosts interface {
	// ClientHostName makes the host (or finds it) and returns its name
	// in the cluster's DNS.
	ClientHostName(ctx context.Context, name string) (string, error)
	// ExecHost is the command that runs argv on the host.
	ExecHost(ctx context.Context, name string, argv []string) (*exec.Cmd, error)
	// ClientNetwork is where its client hosts get their addresses: what
	// validation.allowedNetworks must hold for HTTP-01 and TLS-ALPN-01.
	ClientNetwork() netip.Prefix
}

// SiteLoss is an infrastructure where a site's host and disk can be lost
// and the site rebuilt from the controller's newest backup (fault
// destroy).
type SiteLoss interface {
	// CanDestroy says, before a drill starts, why the site's host and
	// disk cannot be lost and rebuilt here (nil: they can).
	CanDestroy(site string) error
	DestroySite(site string) error
	// LatestBackup is the newest backup of the site in the controller's
	// store (backup.ErrNoBackup: none).
	LatestBackup(ctx context.Context, site string) (backup.Manifest, error)
	SiteDatabaseExists(site string) bool
	// StartSites starts whatever is not running.
	StartSites(ctx context.Context) error
	Rebuild(site string, restored func(ctx context.Context, site string) error, log io.Writer) (*backup.Rebuild, error)
	// Output is where its progress lines (the rebuild's) go.
	Output() io.Writer
}

// HostFaults is an infrastructure whose sites are hosts of their own:
// the hsm and partition faults act on the site's host.
type HostFaults interface {
	// HideToken moves the site's HSM token directory away (hidden) or
	// back, idempotently.
	HideToken(ctx context.Context, site string, hidden bool) error
	// Partition cuts (on) or heals the site's host from everything
	// outside network, with nftables table on the host.
	Partition(ctx context.Context, site, network, table string, on bool) error
}

// HostPower is an infrastructure that can cut a site host's power and
// switch it on again (fault poweroff): every process of the host ends at
// once, no unit is stopped, its disk stays; switched on, it boots and
// its units start by themselves.
type HostPower interface {
	// CanPowerOff says, before a drill starts, why the site's host cannot
	// be switched off and on by cairn (nil: it can).
	CanPowerOff(site string) error
	PowerOff(ctx context.Context, site string) error
	// PowerOn switches the host on and waits until it has booted
	// (idempotent: a host that runs is left alone).
	PowerOn(ctx context.Context, site string) error
}

// Provisioned is a cluster cairn provisioned hosts for (not the lab):
// Infra names its infrastructure (nspawn, aws, existing) in the report.
// The lab's Prometheus runs only in the lab: a drill there reports the
// alerts it fired; on provisioned hosts it says it did not check them.
type Provisioned interface {
	Infra() string
}

// ProbeHistory is an infrastructure whose controller's probe history is
// read through it (the lab's is a file here).
type ProbeHistory interface {
	ProbeSamples(ctx context.Context, from time.Time) ([]healthcheck.Sample, error)
}

// Releases is an infrastructure whose sites' releases a drill rolls
// (fault upgrade) with `cairn upgrade apply`'s code: it says how that
// acts on it (the lab: bundles and processes here; provisioned hosts:
// bundles re-rendered here and installed by Ansible, SQL and probes
// through the hosts).
type Releases interface {
	UpgradeOptions(ctx context.Context) (upgrade.ApplyOptions, error)
}

// faultKind is one row of the fault table: adding a fault is one type
// implementing Fault and one row here.
type faultKind struct {
	Name string
	// Component: steps must name a component (wfe, sa, mariadb, …).
	Component bool
	// SiteOnly: it applies to a site, never to "cluster".
	SiteOnly bool
	// Network: it cuts the network, and is restored before the others (a
	// component restarted behind a partition cannot reach its database).
	Network bool
	// Check validates the rest of the step; field is relative to it
	// (".latency").
	Check func(st Step, add func(field, format string, args ...any))
	// Build makes the fault for one concrete site (or "cluster").
	Build func(in Infra, st Step, site, table string) (Fault, error)
}

func procKind(name string) faultKind {
	return faultKind{Name: name, Component: true, Build: func(in Infra, st Step, site, _ string) (Fault, error) {
		return &procFault{l: in, site: site, component: st.Component, hang: name == "hang", graceful: name == "stop"}, nil
	}}
}

// faultKinds is the table of faults a scenario may use.
var faultKinds = []faultKind{
	procKind("crash"),
	procKind("hang"),
	procKind("stop"),
	{Name: "hsm", SiteOnly: true, Build: func(in Infra, _ Step, site, _ string) (Fault, error) {
		host, _ := in.(HostFaults)
		return &hsmFault{l: in, host: host, site: site, dir: in.ClusterSpec().Path(filepath.Join("sites", site))}, nil
	}},
	{Name: "partition", SiteOnly: true, Network: true, Build: func(in Infra, _ Step, site, table string) (Fault, error) {
		s, ok := in.ClusterSpec().SiteByName(site)
		if !ok {
			return nil, fmt.Errorf("no site %q", site)
		}
		if s.ServiceNetwork == "" {
			return nil, fmt.Errorf("site %s has no serviceNetwork to partition", site)
		}
		host, _ := in.(HostFaults)
		return &partitionFault{host: host, site: site, network: s.ServiceNetwork, table: table}, nil
	}},
	{Name: "poweroff", SiteOnly: true, Build: func(in Infra, _ Step, site, _ string) (Fault, error) {
		host, ok := in.(HostPower)
		if !ok {
			return nil, errors.New("poweroff: the lab's sites have no host of their own to switch off: run it on systemd hosts (--infra nspawn), or crash the site's components here")
		}
		if _, ok := in.ClusterSpec().SiteByName(site); !ok {
			return nil, fmt.Errorf("no site %q", site)
		}
		if err := host.CanPowerOff(site); err != nil {
			return nil, err
		}
		return &powerFault{host: host, site: site}, nil
	}},
	{Name: "flap", Component: true,
		Check: func(st Step, add func(string, string, ...any)) {
			if st.Down.Duration <= 0 || st.Up.Duration <= 0 || st.For.Duration <= 0 {
				add("", "flap needs down, up and for (e.g. down: 4s, up: 4s, for: 60s)")
			}
		},
		Build: func(in Infra, st Step, site, _ string) (Fault, error) {
			inner := &procFault{l: in, site: site, component: st.Component, hang: st.Signal == "stop"}
			return &flapFault{inner: inner, down: st.Down.Duration, up: st.Up.Duration}, nil
		}},
	{Name: "toxic", SiteOnly: true, Network: true,
		Check: func(st Step, add func(string, string, ...any)) {
			switch {
			case st.Toxic != "latency" && st.Toxic != "timeout" && st.Toxic != "reset":
				add(".toxic", "%q: use latency, timeout or reset", st.Toxic)
			case st.Toxic == "latency" && st.Latency.Duration <= 0:
				add(".latency", "is required for toxic: latency (e.g. latency: 3s)")
			}
		},
		Build: func(in Infra, st Step, site, table string) (Fault, error) {
			if _, ok := in.(Provisioned); ok {
				return nil, errors.New("toxic: its proxy runs on this machine and would slow only this machine's connections, not the clients' or the controller's: on provisioned hosts use partition, or your network's own tools")
			}
			s, ok := in.ClusterSpec().SiteByName(site)
			if !ok {
				return nil, fmt.Errorf("no site %q", site)
			}
			wfe := net.JoinHostPort(s.Address, strconv.Itoa(in.ClusterSpec().ACME.HTTPSPort))
			return &toxicFault{site: site, wfe: wfe, kind: st.Toxic, latency: st.Latency.Milliseconds(), jitter: st.Jitter.Milliseconds(), table: table}, nil
		}},
	{Name: "upgrade",
		Check: func(st Step, add func(string, string, ...any)) {
			if st.Site != "cluster" {
				add(".site", "upgrade rolls through every site in upgrade order: use site: cluster")
			}
			if st.To != "" {
				if err := boulderbin.CheckVersion(st.To); err != nil {
					add(".to", "%v", err)
				}
			}
		},
		Build: func(in Infra, st Step, _, table string) (Fault, error) {
			l, ok := in.(Releases)
			if !ok {
				return nil, errors.New("upgrade: this infrastructure cannot roll releases (the lab and provisioned hosts can)")
			}
			return &upgradeFault{options: l.UpgradeOptions, spec: in.ClusterSpec(), st: st, state: in.ClusterSpec().Path(filepath.Join("var", table+"-upgrade.json"))}, nil
		}},
	{Name: "destroy", SiteOnly: true, Build: func(in Infra, _ Step, site, _ string) (Fault, error) {
		l, ok := in.(SiteLoss)
		if !ok {
			return nil, errors.New("destroy: only in the lab and on nspawn hosts (it loses a site's host and disk and rebuilds it from a backup)")
		}
		if err := l.CanDestroy(site); err != nil {
			return nil, err
		}
		return &destroyFault{l: l, spec: in.ClusterSpec(), site: site, log: l.Output()}, nil
	}},
	{Name: "replication", SiteOnly: true, Build: func(in Infra, _ Step, site, _ string) (Fault, error) {
		if _, ok := in.ClusterSpec().SiteByName(site); !ok {
			return nil, fmt.Errorf("no site %q", site)
		}
		return &replicationFault{l: in, site: site}, nil
	}},
}

func faultKindOf(name string) (faultKind, bool) {
	i := slices.IndexFunc(faultKinds, func(k faultKind) bool { return k.Name == name })
	if i < 0 {
		return faultKind{}, false
	}
	return faultKinds[i], true
}

func faultNames() string {
	var names []string
	for _, k := range faultKinds {
		names = append(names, k.Name)
	}
	return strings.Join(names, ", ")
}
