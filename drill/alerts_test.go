package drill

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Prometheus's answer to ALERTS over the run: an alert already firing
// before the fault is not the fault's; the others are events, pages
// (warning, critical) apart from info alerts, in time order.
func TestAlertEventsFromPrometheus(t *testing.T) {
	fault := time.Unix(1000, 0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query_range" || r.URL.Query().Get("query") != `ALERTS{alertstate="firing"}` {
			http.Error(w, "unexpected "+r.URL.String(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[
 {"metric":{"__name__":"ALERTS","alertname":"CairnCRLExpiresIn72h","alertstate":"firing","severity":"warning","site":"c","issuer":"c E1"},"values":[[999,"1"],[1000,"1"],[1001,"1"]]},
 {"metric":{"__name__":"ALERTS","alertname":"CairnSiteDown","alertstate":"firing","severity":"warning","site":"a","state":"down"},"values":[[1037,"1"],[1038,"1"]]},
 {"metric":{"__name__":"ALERTS","alertname":"CairnACMENameMoved","alertstate":"firing","severity":"info","reason":"down"},"values":[[1012,"1"]]}]}}`)
	}))
	defer srv.Close()
	evs, err := alertEvents(context.Background(), srv.URL, fault, fault.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("events %+v, want the move and the site-down page", evs)
	}
	if e := evs[0]; e.Kind != eventAlertInfo || e.Detail != "CairnACMENameMoved (info) reason=down" || !e.At.Equal(time.Unix(1012, 0)) {
		t.Errorf("first event %+v", e)
	}
	if e := evs[1]; e.Kind != eventAlertPage || e.Site != "a" || e.Detail != "CairnSiteDown (warning) state=down" || !e.At.Equal(time.Unix(1037, 0)) {
		t.Errorf("second event %+v", e)
	}
	if _, err := alertEvents(context.Background(), "http://127.0.0.1:1", fault, fault.Add(time.Minute)); err == nil {
		t.Error("no Prometheus: no error")
	}
}
