package healthcheck

import (
	"bytes"
	"fmt"
	"html/template"
	"time"
)

// BoardCSS styles the board; pages that embed BoardHTML include it.
const BoardCSS = `
.board h3{margin:1.2em 0 .3em}
.board .scroll{overflow-x:auto}
.board svg{width:100%;max-width:720px;height:auto;display:block;background:#fafafa;border:1px solid #ddd}
.board svg text{font:10px system-ui,sans-serif;fill:#555}
.board svg .grid{stroke:#e4e4e4}
.board svg .down{fill:#b3261e;fill-opacity:.18}
.board svg polyline{fill:none;stroke-width:1.5}
.board .legend span{display:inline-block;margin-right:1em;font-size:.85em;white-space:nowrap}
.board .legend i{display:inline-block;width:.9em;height:.25em;vertical-align:middle;margin-right:.3em}
.board .failing{color:#b3261e}
.board .ok{color:#176f2c}
.board td.num{text-align:right;font-variant-numeric:tabular-nums}
`

var boardTmpl = template.Must(template.New("board").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.3f %%", f*100) },
	"up":  func(f float64) string { return fmt.Sprintf("%.3f %%", f) },
	"secs": func(s float64) string {
		return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
	},
	"clock": func(t time.Time) string { return t.Local().Format("15:04:05") },
	"share": func(a Availability, w time.Duration) string {
		return fmt.Sprintf("%.2f %%", 100*a.FailedShare[w.String()])
	},
	"windows": func() []time.Duration { return RetryWindows },
	"wlabel":  retryLabel,
	"longest": func(a Availability) *Outage {
		var l *Outage
		for i := range a.Outages {
			if l == nil || a.Outages[i].Seconds > l.Seconds {
				l = &a.Outages[i]
			}
		}
		return l
	},
}).Parse(`<div class="board">
<h2>Probes</h2>
{{range .Sites}}<section class="site" id="site-{{.Name}}">
<h3>site {{.Name}}</h3>
{{if .Failing}}<ul class="failing">{{range .Failing}}<li><b>{{.Kind}}</b> fails at step <b class="step">{{.Step}}</b>{{if .Problem}}: ACME problem <code class="problem">{{.Problem}}</code>{{end}}{{if .HTTPStatus}}, HTTP <span class="status">{{.HTTPStatus}}</span>{{end}}{{if .Class}} <small>({{.Class}})</small>{{end}} <small>{{clock .At}}{{if .Detail}} — {{.Detail}}{{end}}</small></li>
{{end}}</ul>{{else}}<p class="ok">every probe kind passed its last run</p>{{end}}
{{with .Chart}}{{$c := .}}<svg class="latency" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="issuance step latency, last hour">
{{range .YTicks}}<line class="grid" x1="{{$c.Left}}" x2="{{$c.Width}}" y1="{{.At}}" y2="{{.At}}"/><text x="2" y="{{.At}}">{{.Label}}</text>
{{end}}{{range .XTicks}}<text x="{{.At}}" y="{{$c.Height}}" text-anchor="middle" dy="-6">{{.Label}}</text>
{{end}}{{range .Shades}}<rect class="down" x="{{.X}}" y="{{$c.Top}}" width="{{.W}}" height="{{$c.Bottom}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Lines}}<polyline stroke="{{.Color}}" points="{{.Points}}"><title>{{.Step}}</title></polyline>
{{end}}</svg>
<p class="legend">{{range .Lines}}<span><i style="background:{{.Color}}"></i>{{.Step}} {{.Last}}</span>{{end}}{{if .Shades}}<span><i style="background:#b3261e;opacity:.4"></i>down</span>{{end}}{{if not .Lines}}<span>no successful issuance probe in the last hour</span>{{end}}</p>{{end}}
</section>
{{end}}
<h2>Availability</h2>
<p><small>Issuance probes: uptime, outages with the step that failed, and the share of certificate requests a client that retries for 0 s, 30 s, 2 min or 10 min would have lost. "service" is the site the ACME name pointed to at each moment.</small></p>
<div class="scroll"><table id="availability"><tr><th>window</th><th>scope</th><th>uptime</th><th>outages</th><th>longest (failing step)</th>{{range windows}}<th>lost, retry {{wlabel .}}</th>{{end}}</tr>
{{range $w := .Availability}}{{with .Report.Service}}<tr><td>{{$w.Label}}</td><td><b>service</b></td><td class="num">{{up .UptimePct}}</td><td class="num">{{len .Outages}}</td><td>{{with longest .}}{{secs .Seconds}} ({{.FailingStep}}){{else}}–{{end}}</td>{{$a := .}}{{range windows}}<td class="num">{{share $a .}}</td>{{end}}</tr>
{{end}}{{range .Report.Sites}}<tr><td>{{$w.Label}}</td><td>{{.Name}}</td><td class="num">{{up .UptimePct}}</td><td class="num">{{len .Outages}}</td><td>{{with longest .}}{{secs .Seconds}} ({{.FailingStep}}){{else}}–{{end}}</td>{{$a := .}}{{range windows}}<td class="num">{{share $a .}}</td>{{end}}</tr>
{{end}}{{end}}</table></div>
</div>`))

// BoardHTML renders the board as an HTML fragment (escaped by
// html/template) for a page to embed with BoardCSS.
func BoardHTML(v *BoardView) (template.HTML, error) {
	var b bytes.Buffer
	if err := boardTmpl.Execute(&b, v); err != nil {
		return "", err
	}
	return template.HTML(b.String()), nil
}

// BoardPage is a whole page for the board alone (`cairn probe --watch`).
var BoardPage = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta http-equiv="refresh" content="10">
<title>cairn probe — {{.Title}}</title>
<style>body{font:15px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}small{color:#666}
@media (max-width:600px){body{margin:.5em}}{{.CSS}}</style></head><body>
<h1>cairn probe: {{.Title}}</h1>
<p><small>as of {{.At.Local.Format "2006-01-02 15:04:05"}} · <a href="/metrics">/metrics</a></small></p>
{{.Board}}
</body></html>
`))

// PageData fills BoardPage.
type PageData struct {
	Title string
	At    time.Time
	CSS   template.CSS
	Board template.HTML
}
