package upgrade

import (
	"io"
	"os"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
)

// Lab is what an upgrade of the lab's sites needs of the lab (lab.Lab).
type Lab interface {
	Host
	SiteDir(site string) string
}

// ForLab is the options of an upgrade of the lab's sites: bundles where
// they run, the lab's controller, deep probes with the probe accounts,
// the state file next to the spec. self is the cairn executable ("":
// this one).
func ForLab(spec *cluster.Spec, l Lab, log io.Writer, self string) (ApplyOptions, error) {
	probe, err := SiteProber(spec, 30*time.Second)
	if err != nil {
		return ApplyOptions{}, err
	}
	if self == "" {
		self, _ = os.Executable()
	}
	if log == nil {
		log = os.Stderr
	}
	return ApplyOptions{
		Options:    Options{Spec: spec, Bundle: l.SiteDir, Root: l.SiteDir, Lab: true, Self: self, Log: log},
		StateFile:  StateFile(spec),
		Host:       l,
		Controller: &failover.Client{Spec: spec},
		Probe:      probe,
	}, nil
}
