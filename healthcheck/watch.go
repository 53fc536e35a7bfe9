package healthcheck

import (
	"html/template"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// WatchHandler is `cairn probe --watch`'s listener: the board page at /
// (the controller's page without its controls) and the probes' metrics.
func WatchHandler(reg prometheus.Gatherer, board *Board, title string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		v, err := board.View(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		frag, err := BoardHTML(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		BoardPage.Execute(w, PageData{Title: title, At: v.At, CSS: template.CSS(BoardCSS), Board: frag})
	})
	return mux
}
