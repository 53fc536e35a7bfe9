package healthcheck

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Chart is an SVG of one site's issuance probe steps over a span: one line
// per step (latency on a log scale, 1 ms to 10 s), the site's outages
// shaded. Coordinates are computed here; the page's template only places
// them (html/template escapes every text).
type Chart struct {
	Width, Height, Top, Bottom, Left int
	Lines                            []ChartLine
	Shades                           []ChartShade
	YTicks, XTicks                   []ChartTick
}

// ChartLine is one step's latency over time.
type ChartLine struct {
	Step, Color, Points string
	Last                string // the last latency, for the legend
}

// ChartShade is one outage.
type ChartShade struct {
	X, W  int
	Title string
}

// ChartTick is one axis label.
type ChartTick struct {
	At    int
	Label string
}

// chartPalette is distinguishable on white and for common colour-vision
// deficiencies (Okabe–Ito).
var chartPalette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"}

const (
	chartW, chartH        = 720, 200
	chartLeft, chartRight = 48, 8
	chartTop, chartBottom = 8, 22
	chartMinMS, chartMaxM = 1.0, 10000.0
)

// latencyChart draws rs (one site's issuance results, oldest first) over
// [from, to] with outages shaded.
func latencyChart(rs []Result, outages []Outage, from, to time.Time) Chart {
	c := Chart{Width: chartW, Height: chartH, Top: chartTop, Bottom: chartH - chartBottom, Left: chartLeft}
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 {
		return chartLeft + (chartW-chartLeft-chartRight)*math.Min(math.Max(t.Sub(from).Seconds()/span, 0), 1)
	}
	y := func(ms float64) float64 {
		ms = math.Min(math.Max(ms, chartMinMS), chartMaxM)
		frac := math.Log10(ms/chartMinMS) / math.Log10(chartMaxM/chartMinMS)
		return float64(c.Bottom) - float64(c.Bottom-chartTop)*frac
	}
	for _, o := range outages {
		end := o.End
		if o.Ongoing {
			end = to
		}
		if end.Before(from) {
			continue
		}
		x0, x1 := x(o.Start), x(end)
		c.Shades = append(c.Shades, ChartShade{X: int(x0), W: max(1, int(x1-x0)), Title: fmt.Sprintf("down %s–%s: %s", o.Start.Local().Format("15:04:05"), end.Local().Format("15:04:05"), o.FailingStep)})
	}
	order, pts, last := []string{}, map[string]*strings.Builder{}, map[string]time.Duration{}
	for _, r := range rs {
		for _, s := range r.Steps {
			if !s.OK {
				continue
			}
			b, ok := pts[s.Name]
			if !ok {
				b = &strings.Builder{}
				pts[s.Name] = b
				order = append(order, s.Name)
			}
			fmt.Fprintf(b, "%.1f,%.1f ", x(r.Started), y(float64(s.Duration.Microseconds())/1000))
			last[s.Name] = s.Duration
		}
	}
	for i, name := range order {
		c.Lines = append(c.Lines, ChartLine{Step: name, Color: chartPalette[i%len(chartPalette)], Points: strings.TrimSpace(pts[name].String()),
			Last: fmt.Sprintf("%.0f ms", float64(last[name].Microseconds())/1000)})
	}
	for _, ms := range []float64{1, 10, 100, 1000, 10000} {
		label := fmt.Sprintf("%.0f ms", ms)
		if ms >= 1000 {
			label = fmt.Sprintf("%.0f s", ms/1000)
		}
		c.YTicks = append(c.YTicks, ChartTick{At: int(y(ms)), Label: label})
	}
	for i := 0; i <= 4; i++ {
		t := from.Add(time.Duration(float64(to.Sub(from)) * float64(i) / 4))
		c.XTicks = append(c.XTicks, ChartTick{At: int(x(t)), Label: t.Local().Format("15:04")})
	}
	return c
}
