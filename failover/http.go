package failover

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/revocation"
)

// Handler serves the status page (/), the JSON API (/api/status,
// /api/plan), operator calls (POST /api/move?to=S, /api/drain?site=S,
// /api/undrain?site=S; bearer token) and /metrics. No page, response or
// log line carries a secret.
func (c *Controller) Handler(reg prometheus.Gatherer, adminToken string) http.Handler {
	tok := operatorToken(adminToken)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/plan", func(w http.ResponseWriter, r *http.Request) {
		plan := c.Plan()
		if plan == nil {
			plan = []Intent{}
		}
		writeJSON(w, map[string]any{"intents": plan})
	})
	// Replication details (a replica's last error quotes SQL and rows:
	// account contacts) only with the token; without it, ok or broken.
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		st := c.Status()
		if !tok.presented(r) {
			st.hideReplicationDetails()
		}
		writeJSON(w, st)
	})
	admin := func(cmdType, param string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if tok.authorized(w, r) {
				c.serveCommand(w, r, cmdType, param)
			}
		}
	}
	mux.HandleFunc("POST /api/move", admin("move", "to"))
	mux.HandleFunc("POST /api/drain", admin("drain", "site"))
	mux.HandleFunc("POST /api/undrain", admin("undrain", "site"))
	mux.HandleFunc("POST /api/revoke", func(w http.ResponseWriter, r *http.Request) {
		if tok.authorized(w, r) {
			c.serveRevoke(w, r)
		}
	})
	mux.HandleFunc("POST /api/restored", func(w http.ResponseWriter, r *http.Request) {
		if tok.authorized(w, r) {
			c.serveRestored(w, r)
		}
	})
	// Serials, requesters and errors: the operator's, like the commands.
	mux.HandleFunc("GET /api/revocations", func(w http.ResponseWriter, r *http.Request) {
		if tok.authorized(w, r) {
			c.serveRevocations(w, r)
		}
	})
	mux.HandleFunc("GET /{$}", c.servePage)
	return mux
}

// operatorToken is the admin token the operator's requests present
// (Authorization: Bearer); "" accepts none.
type operatorToken string

func (t operatorToken) presented(r *http.Request) bool {
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	return t != "" && subtle.ConstantTimeCompare([]byte(got), []byte(t)) == 1
}

// authorized answers 401 unless r presents the token.
func (t operatorToken) authorized(w http.ResponseWriter, r *http.Request) bool {
	if !t.presented(r) {
		http.Error(w, "missing or wrong admin token", http.StatusUnauthorized)
		return false
	}
	return true
}

// serveCommand runs an operator's move, drain or undrain of the site in
// ?param= and answers the status once the leader's next decision ran.
func (c *Controller) serveCommand(w http.ResponseWriter, r *http.Request, cmdType, param string) {
	s := r.URL.Query().Get(param)
	if s == "" {
		http.Error(w, "missing ?"+param+"=SITE", http.StatusBadRequest)
		return
	}
	c.Log.Info("operator command", "command", cmdType, "site", s, "from", r.RemoteAddr)
	if err := c.Command(r.Context(), Command{Type: cmdType, Site: s}); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	// Let the leader's next decision run (here or on another
	// controller), then report what this controller sees.
	deadline := time.Now().Add(300 * time.Millisecond)
	if cmdType == "move" && c.Coord != nil {
		deadline = time.Now().Add(3 * time.Second)
	}
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if cmdType == "move" && c.Status().Active == s {
			break
		}
	}
	writeJSON(w, c.Status())
}

// serveRestored is `cairn site rebuild` telling the controller that
// ?site= was restored from a backup: its journal entries and key blocks
// are applied there again (revocation.Replayer.Reopen).
func (c *Controller) serveRestored(w http.ResponseWriter, r *http.Request) {
	s := r.URL.Query().Get("site")
	if !slices.Contains(c.Spec.SiteNames(), s) {
		http.Error(w, "site: give ?site= one of "+strings.Join(c.Spec.SiteNames(), ", "), http.StatusBadRequest)
		return
	}
	n := 0
	if c.Revocations != nil {
		var err error
		if n, err = c.Revocations.Reopen(r.Context(), s); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
	}
	c.Log.Info("site restored from a backup: its revocations and key blocks are applied again", "site", s, "entries", n, "from", r.RemoteAddr)
	writeJSON(w, map[string]int{"reopened": n})
}

// serveRevocations lists the revocation journal.
func (c *Controller) serveRevocations(w http.ResponseWriter, r *http.Request) {
	if c.Revocations == nil {
		writeJSON(w, []revocation.Entry{})
		return
	}
	es, err := c.Revocations.Journal.List(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if es == nil {
		es = []revocation.Entry{}
	}
	writeJSON(w, es)
}

// servePage is the status page (replication details hidden: it needs no
// token).
func (c *Controller) servePage(w http.ResponseWriter, r *http.Request) {
	page := pageData{Status: c.Status(), CSS: template.CSS(healthcheck.BoardCSS)}
	page.hideReplicationDetails()
	if c.Board != nil {
		v, err := c.Board.View(r.Context())
		if err == nil {
			v.HideDetails(healthcheck.KindReplication, replicationDetailsHidden)
			page.Board, err = healthcheck.BoardHTML(v)
		}
		if err != nil {
			c.Log.Warn("status page: probe board", "err", err)
			page.BoardError = err.Error()
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := statusPage.Execute(w, page); err != nil {
		c.Log.Error("status page", "err", err)
	}
}

// replicationDetailsHidden stands for a replication detail shown only
// with the operator's token.
const replicationDetailsHidden = "details: `cairn accounts status` or `cairn failover status` (operator token)"

func (st *Status) hideReplicationDetails() {
	for i := range st.Sites {
		if a := st.Sites[i].Accounts; a != nil && a.Detail != "" {
			a.Detail = replicationDetailsHidden
		}
	}
}

// pageData is the status page: the controller's status and the probes'
// board.
type pageData struct {
	Status
	CSS        template.CSS
	Board      template.HTML
	BoardError string
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta http-equiv="refresh" content="5">
<title>cairn failover — {{.Active}}</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em} table{border-collapse:collapse;margin:1em 0} td,th{padding:.35em .8em;border-bottom:1px solid #ddd;text-align:left}
.healthy{color:#176f2c;font-weight:600}.suspect{color:#a66b00;font-weight:600}.down{color:#b3261e;font-weight:600}
.recovering{color:#1f5fa8}.unknown{color:#666}.active{background:#eef6ee}
.alert{background:#b3261e;color:#fff;padding:.6em 1em;border-radius:4px}
small{color:#666}
.scroll{overflow-x:auto}
@media (max-width:600px){body{margin:.5em}td,th{padding:.3em .4em}}
{{.CSS}}</style></head><body>
<h1>cairn failover</h1>
<p>controller <b>{{.Controller}}</b>{{if .Leading}} (leader){{else}} (follower; leader <b id="leader">{{or .Leader "none"}}</b>){{end}} · active site <b id="active">{{.Active}}</b>{{if not .HoldUntil.IsZero}} · hold-down until {{.HoldUntil.Format "15:04:05"}}{{end}}</p>
{{if .Alert}}<p class="alert">No healthy site: the ACME name is left on {{.Active}}.</p>{{end}}
<div class="scroll"><table id="sites"><tr><th>site</th><th>state</th><th>since</th><th>priority</th><th>address</th><th>release</th><th>accounts</th><th>note</th></tr>
{{range .Sites}}<tr class="{{if eq .Name $.Active}}active{{end}}"><td>{{.Name}}{{if eq .Name $.Active}} ◀ active{{end}}</td>
<td class="{{.State}}">{{.State}}</td><td>{{ago .Since}}</td><td>{{.Priority}}</td><td>{{.Address}}</td>
<td class="release">{{with .Release}}Boulder {{.Boulder}}<br><small>bundle {{.Bundle}}</small>{{else}}–{{end}}</td>
<td class="accounts">{{with .Accounts}}{{if .OK}}<span class="healthy">replicating</span>{{else}}<span class="suspect">replication broken</span> <small>{{.Detail}} (still issues; not failed over for this)</small>{{end}}{{else}}–{{end}}</td>
<td>{{if .Drained}}drained. {{end}}{{with .NotReady}}<span class="suspect">not ready</span> <small>{{.}} (a last resort only)</small> {{end}}<small>{{.Reason}}</small></td></tr>
{{end}}</table></div>
{{range .CRLFronts}}{{if .Withdrawn}}<p class="suspect">CRL front of {{.Site}} ({{.Address}}) withdrawn from the CRL names {{ago .Since}}: {{.Reason}}</p>{{end}}{{end}}
{{if .Views}}<h2>Controllers</h2>
<table id="views"><tr><th>controller</th><th>view published</th><th>observations</th><th>counts</th></tr>
{{range .Views}}<tr><td>{{.Controller}}{{if eq .Controller $.Leader}} (leader){{end}}</td><td>{{ago .Published}}</td><td>{{.Observations}}</td><td>{{if .Fresh}}yes{{else}}no: stale{{end}}</td></tr>
{{end}}</table>{{end}}
<h2>Recent moves</h2>
{{if .Moves}}<div class="scroll"><table id="moves"><tr><th>at</th><th>from</th><th>to</th><th>epoch</th><th>reason</th><th>update</th></tr>
{{range .Moves}}<tr><td>{{.At.Format "2006-01-02 15:04:05"}}</td><td>{{.From}}</td><td>{{.To}}</td><td>{{.Epoch}}</td><td>{{.Reason}}</td><td>{{printf "%.1f" .CommitMS}} ms</td></tr>
{{end}}</table></div>{{else}}<p>none since this controller started.</p>{{end}}
{{.Board}}{{if .BoardError}}<p class="alert">probe board: {{.BoardError}}</p>{{end}}
<p><small>JSON: <a href="/api/status">/api/status</a> · plan: <a href="/api/plan">/api/plan</a> · <a href="/metrics">/metrics</a></small></p>
</body></html>
`))

// serveRevoke journals a revocation (?serial=HEX&reason=R) and tries it at
// the issuing site at once; it answers the journal entry.
func (c *Controller) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if c.Revocations == nil {
		http.Error(w, "this controller keeps no revocation journal", http.StatusNotImplemented)
		return
	}
	q := r.URL.Query()
	serial, err := revocation.ParseSerial(q.Get("serial"))
	if err == nil {
		err = revocation.CheckReason(q.Get("reason"))
	}
	var site string
	if err == nil {
		site, err = revocation.Route(c.Spec, serial)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	spki := strings.ToLower(q.Get("spki"))
	if spki != "" && (len(spki) != 64 || strings.Trim(spki, "0123456789abcdef") != "") {
		http.Error(w, "spki: want the SHA-256 of the certificate's public key in hex", http.StatusBadRequest)
		return
	}
	if q.Get("reason") != "keyCompromise" {
		spki = "" // only a compromised key is blocked everywhere
	}
	e, err := c.Revocations.Submit(r.Context(), revocation.Entry{Serial: serial, Site: site, Reason: q.Get("reason"), Requester: r.RemoteAddr, SPKIHash: spki})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	c.Log.Info("revocation requested", "serial", serial, "site", site, "reason", e.Reason, "from", r.RemoteAddr)
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := c.Revocations.Step(ctx); err != nil {
		c.Log.Warn("revocation journal", "err", err)
	}
	es, err := c.Revocations.Journal.List(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for _, x := range es {
		if x.Serial == serial {
			e = x
		}
	}
	writeJSON(w, e)
}
