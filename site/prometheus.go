package site

import (
	"fmt"
	"os"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/monitoring"
)

// PrometheusProcess is the lab's Prometheus server in the cluster bundle.
const PrometheusProcess = "prometheus"

// scrapeEvery is the lab Prometheus's scrape and rule evaluation interval:
// short, so a drill sees when an alert would have paged within seconds.
const scrapeEvery = 5 * time.Second

// prometheus renders the lab's Prometheus: it scrapes the failover
// controller and every Boulder component of every site (labels site and
// component) and evaluates cairn's alert rules (monitoring.Rules).
func (r *clusterRender) prometheus() error {
	spec := r.spec
	type static struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels,omitempty"`
	}
	type job struct {
		Name     string   `yaml:"job_name"`
		Interval string   `yaml:"scrape_interval,omitempty"`
		Static   []static `yaml:"static_configs"`
	}
	jobs := []job{
		{Name: "cairn-controller", Static: []static{{Targets: []string{spec.Failover.Listen}}}},
		{Name: "prometheus", Static: []static{{Targets: []string{spec.Monitoring.Prometheus}}}},
	}
	boulder := job{Name: "boulder", Interval: "15s"}
	for i, s := range spec.Sites {
		p, err := NewPlan(spec, i)
		if err != nil {
			return err
		}
		addrs := p.MetricsAddrs()
		names := make([]string, 0, len(addrs))
		for n := range addrs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			boulder.Static = append(boulder.Static, static{Targets: []string{addrs[n]}, Labels: map[string]string{"site": s.Name, "component": n}})
		}
	}
	jobs = append(jobs, boulder)
	conf := map[string]any{
		"global": map[string]any{"scrape_interval": scrapeEvery.String(), "evaluation_interval": scrapeEvery.String(),
			"external_labels": map[string]string{"cluster": spec.Name}},
		"rule_files":     []string{r.root("etc", "cairn-rules.yml")},
		"scrape_configs": jobs,
	}
	b, err := yaml.Marshal(conf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.out("var", "prometheus"), 0o755); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(r.out("etc", "cairn-rules.yml"), monitoring.Rules, 0o644); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(r.out("etc", "prometheus.yml"), append([]byte("# The lab's Prometheus, rendered by cairn.\n"), b...), 0o644)
}

// prometheusProcess is the server's process in the bundle.
func (r *clusterRender) prometheusProcess() Process {
	spec := r.spec
	return Process{Name: PrometheusProcess, Program: "prometheus", Args: []string{
		"--config.file=" + r.root("etc", "prometheus.yml"),
		"--storage.tsdb.path=" + r.root("var", "prometheus"),
		"--storage.tsdb.retention.time=" + promDuration(spec.Monitoring.Retention.Duration),
		"--web.listen-address=" + spec.Monitoring.Prometheus,
		"--web.external-url=http://" + spec.Monitoring.Prometheus + "/",
		"--log.level=warn",
	}, Ready: "tcp:" + spec.Monitoring.Prometheus, Listen: spec.Monitoring.Prometheus}
}

// promDuration writes d in Prometheus's duration syntax (whole hours or
// minutes).
func promDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dm", d/time.Minute)
}

// WantsPrometheus reports whether the lab runs its Prometheus.
func WantsPrometheus(spec *cluster.Spec) bool {
	return spec.Monitoring.Prometheus != cluster.PrometheusOff
}
