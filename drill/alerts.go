package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/site"
)

// Event kinds of the alerts the lab's Prometheus fired during a run: a
// page (severity warning or critical) or an info alert.
const (
	eventAlertPage = "alert-firing"
	eventAlertInfo = "alert-info"
)

// firedAlerts asks the lab's Prometheus (monitoring.prometheus) which of
// cairn's alerts started firing between the fault and now, and adds one
// event for each: when the pager would have gone off.
func (r *Runner) firedAlerts(ctx context.Context, rep *Report) {
	if !site.WantsPrometheus(r.spec) || rep.FaultAt.IsZero() {
		return
	}
	if _, ok := r.Infra.(Provisioned); ok {
		rep.NotChecked = append(rep.NotChecked, "alerts: the Prometheus of monitoring.prometheus runs in the lab only; on provisioned hosts your Prometheus evaluates monitoring/cairn-rules.yml (docs/monitoring.md)")
		return
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	evs, err := alertEvents(qctx, "http://"+r.spec.Monitoring.Prometheus, rep.FaultAt, time.Now())
	if err != nil {
		rep.Errors = append(rep.Errors, "which alerts fired: "+err.Error())
		return
	}
	rep.Events = append(rep.Events, evs...)
}

// alertEvents reads ALERTS{alertstate="firing"} from Prometheus at base
// between from and to, and returns the moment each alert began firing
// after from (one already firing at from is not the fault's doing).
func alertEvents(ctx context.Context, base string, from, to time.Time) ([]Event, error) {
	step := max(time.Second, to.Sub(from)/10000)
	q := url.Values{"query": {`ALERTS{alertstate="firing"}`}, "start": {unix(from.Add(-step))}, "end": {unix(to)}, "step": {step.String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query_range?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s: %s", base, resp.Status)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s: %s", base, body.Error)
	}
	var evs []Event
	for _, s := range body.Data.Result {
		if len(s.Values) == 0 {
			continue
		}
		first, ok := s.Values[0][0].(float64)
		if !ok || !time.Unix(0, int64(first*1e9)).After(from) {
			continue
		}
		evs = append(evs, alertEvent(s.Metric, time.Unix(0, int64(first*1e9))))
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
	return evs, nil
}

// alertEvent describes one alert: its name, severity and labels.
func alertEvent(m map[string]string, at time.Time) Event {
	kind := eventAlertInfo
	if m["severity"] == "warning" || m["severity"] == "critical" {
		kind = eventAlertPage
	}
	var labels []string
	for k, v := range m {
		switch k {
		case "__name__", "alertname", "alertstate", "severity", "cluster", "site", "instance", "job":
			continue
		}
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	detail := m["alertname"] + " (" + m["severity"] + ")"
	if len(labels) > 0 {
		detail += " " + strings.Join(labels, " ")
	}
	return Event{At: at, Kind: kind, Site: m["site"], Detail: detail}
}

func unix(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }
