package status

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// The page's data: everything preformatted, so the template only places and escapes strings.
type htmlPage struct {
	Admin          bool
	State          State
	StateLabel     string
	StateIcon      string
	Open           *htmlIncident
	ChecksFailing  bool // the probes see failures and no incident is open
	Overdue        bool
	OverdueMin     int
	IntervalText   string
	Probes         []htmlProbe
	Routes         []htmlRoute
	HasContract    bool
	Contract       []htmlChange
	History        []htmlIncident
	Generated      htmlTime
	IncidentsError string
	PathJSON       string
	PathAtom       string
}

type htmlTime struct{ Text, ISO string }

type htmlProbe struct {
	Name        string
	Up, NotRun  bool
	Windows     []htmlWindow
	Chart       htmlChart
	Checked     string // admin
	LastFailure string // admin
	Consecutive int    // admin
	LastError   string // admin
}

type htmlWindow struct{ Label, Availability, P50, P99 string }

type htmlChart struct {
	Label    string
	Bars     []htmlBar
	Line     string // SVG path of p99 latency; empty without data
	MaxP99   string
	From, To string
}

type htmlBar struct {
	X     int
	Class string
	Title string
}

type htmlRoute struct {
	Name, Upstream             string
	Backends, Healthy, Ejected int
	Addresses                  []htmlAddress // admin
}

type htmlAddress struct {
	IP      string
	Ejected bool
}

type htmlChange struct {
	CIDR, Direction, What string
	At                    htmlTime
}

type htmlIncident struct {
	ID       string
	Title    string
	Impact   State
	Resolved bool
	Opened   htmlTime
	Latest   htmlUpdate
	Updates  []htmlUpdate // newest first
}

type htmlUpdate struct {
	At      htmlTime
	State   string
	Message string
}

// The SVG chart's geometry: 24 slots of chartSlot units; the latency line above the bars.
const (
	chartSlot    = 10
	chartLineTop = 2
	chartLineBot = 30
	chartBarTop  = 34
	chartBarH    = 24
)

var stateLabels = map[State]string{
	Operational: "All systems operational",
	Degraded:    "Degraded: some requests fail or are slow",
	Outage:      "Outage: requests are failing",
}

var stateIcons = map[State]string{Operational: "✓", Degraded: "!", Outage: "✕"}

func renderHTML(w io.Writer, s *snapshot) error {
	p := htmlPage{
		Admin:          !s.public,
		State:          s.state,
		StateLabel:     stateLabels[s.state],
		StateIcon:      stateIcons[s.state],
		Overdue:        s.overdue,
		IntervalText:   humanDuration(s.interval),
		HasContract:    s.hasContract,
		Generated:      htmlTimeOf(s.now),
		IncidentsError: s.storeErr,
		PathJSON:       PathJSON,
		PathAtom:       PathAtom,
	}
	p.ChecksFailing = s.open == nil && s.probeState != Operational
	if s.open != nil {
		inc := incidentHTML(s.open)
		p.Open = &inc
		if s.overdue {
			p.OverdueMin = int(s.now.Sub(s.open.UpdatedAt()) / time.Minute)
		}
	}
	for i := range s.probes {
		p.Probes = append(p.Probes, probeHTML(&s.probes[i], s.notRun[i], s.now))
	}
	for _, r := range s.routes {
		hr := htmlRoute{Name: r.Host + r.PathPrefix, Upstream: r.Upstream, Backends: r.Backends, Healthy: r.Healthy, Ejected: r.Ejected}
		for _, a := range r.Addresses {
			hr.Addresses = append(hr.Addresses, htmlAddress{IP: a.Addr.String(), Ejected: a.Ejected})
		}
		p.Routes = append(p.Routes, hr)
	}
	for _, c := range s.contract {
		what := "goes live"
		if c.Status == ContractDraining {
			what = "retired"
		}
		p.Contract = append(p.Contract, htmlChange{CIDR: c.CIDR, Direction: c.Direction, What: what, At: htmlTimeOf(c.At)})
	}
	for i := range s.incidents {
		p.History = append(p.History, incidentHTML(&s.incidents[i]))
	}
	return pageTemplate.Execute(w, &p)
}

func htmlTimeOf(t time.Time) htmlTime {
	return htmlTime{Text: t.UTC().Format("2006-01-02 15:04 UTC"), ISO: rfc3339(t)}
}

func incidentHTML(inc *Incident) htmlIncident {
	hi := htmlIncident{
		ID:       inc.ID,
		Title:    firstLine(inc.Updates[0].Message),
		Impact:   inc.Impact(),
		Resolved: inc.Resolved(),
		Opened:   htmlTimeOf(inc.OpenedAt()),
	}
	for i := len(inc.Updates) - 1; i >= 0; i-- {
		u := inc.Updates[i]
		hi.Updates = append(hi.Updates, htmlUpdate{At: htmlTimeOf(u.At), State: string(u.State), Message: u.Message})
	}
	hi.Latest = hi.Updates[0]
	return hi
}

func probeHTML(p *ProbeStatus, notRun bool, now time.Time) htmlProbe {
	hp := htmlProbe{Name: p.Name, Up: p.Up, NotRun: notRun, Consecutive: p.ConsecutiveFailures, LastError: p.LastError}
	if !p.Checked.IsZero() {
		hp.Checked = htmlTimeOf(p.Checked).Text
	}
	if !p.LastFailure.IsZero() {
		hp.LastFailure = htmlTimeOf(p.LastFailure).Text
	}
	for i, w := range p.Windows {
		hw := htmlWindow{Label: windowNames[i], Availability: percentText(w.Total, w.Failures), P50: "—", P99: "—"}
		if w.Total > 0 {
			hw.P50, hw.P99 = msText(w.P50), msText(w.P99)
		}
		hp.Windows = append(hp.Windows, hw)
	}
	hp.Chart = chart(p.Name, pad24(p.Hours, now))
	return hp
}

// pad24 is the latest 24 hours, with hours without data before them when fewer are known (the
// last padded hour is the current one when none is known), so every chart spans a day.
func pad24(hours []Hour, now time.Time) []Hour {
	hours = last24(hours)
	if len(hours) == 24 {
		return hours
	}
	next := now.UTC().Truncate(time.Hour).Add(time.Hour)
	if len(hours) > 0 {
		next = hours[0].Start
	}
	out := make([]Hour, 24-len(hours), 24)
	for i := range out {
		out[i].Start = next.Add(-time.Duration(len(out)-i) * time.Hour)
	}
	return append(out, hours...)
}

// chart lays out one bar per hour, newest on the right, coloured by availability, and a line
// of p99 latency scaled to the largest p99 of the day.
func chart(name string, hours []Hour) htmlChart {
	c := htmlChart{Label: "Last 24 hours of " + name + ": availability per hour, and p99 latency"}
	offset := 24 - len(hours)
	var maxP99 time.Duration
	for _, h := range hours {
		if h.Total > 0 {
			maxP99 = max(maxP99, h.P99)
		}
	}
	var line strings.Builder
	prevData, pending := false, ""
	for i, h := range hours {
		slot := offset + i
		bar := htmlBar{X: slot*chartSlot + 1}
		hourText := h.Start.UTC().Format("2006-01-02 15:00") + "–" + h.Start.UTC().Add(time.Hour).Format("15:00") + " UTC: "
		a, ok := availability(h.Total, h.Failures)
		switch {
		case !ok:
			bar.Class, bar.Title = "nodata", hourText+"no data"
		default:
			switch {
			case h.Failures == 0:
				bar.Class = "full"
			case a >= 0.99:
				bar.Class = "high"
			default:
				bar.Class = "low"
			}
			bar.Title = fmt.Sprintf("%s%s of %d checks succeeded; p50 %s, p99 %s", hourText, percentText(h.Total, h.Failures), h.Total, msText(h.P50), msText(h.P99))
		}
		c.Bars = append(c.Bars, bar)
		if !ok || maxP99 <= 0 {
			prevData = false
			continue
		}
		x := float64(slot*chartSlot) + chartSlot/2.0
		y := chartLineBot - float64(h.P99)/float64(maxP99)*(chartLineBot-chartLineTop)
		// The line joins neighbouring hours with data; a lone hour has no segment (its p99 is
		// in the bar's tooltip and the table): a dot would read as dirt on the screen.
		if prevData {
			line.WriteString(pending) // the run's first point, once it has a second
			pending = ""
			fmt.Fprintf(&line, " %.1f %.1f", x, y)
		} else {
			pending = fmt.Sprintf(" M%.1f %.1f L", x, y)
		}
		prevData = true
	}
	c.Line = strings.TrimSpace(line.String())
	if maxP99 > 0 {
		c.MaxP99 = msText(maxP99)
	}
	if len(hours) > 0 {
		c.From = hours[0].Start.UTC().Format("Jan 2 15:00 UTC")
		c.To = "now"
	}
	return c
}

// percentText is the share of successes, rounded down to 2 decimals so a failure never shows
// as 100%, or "no data".
func percentText(total, failures int) string {
	a, ok := availability(total, failures)
	switch {
	case !ok:
		return "no data"
	case failures <= 0:
		return "100%"
	}
	return fmt.Sprintf("%.2f%%", math.Floor(a*10000)/100)
}

func msText(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.0f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

var pageTemplate = template.Must(template.New("status").Parse(pageHTML))

const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="60">
<meta name="color-scheme" content="light dark">
<title>{{.StateLabel}} · fixedgate status</title>
<link rel="alternate" type="application/atom+xml" title="Incident updates" href="{{.PathAtom}}">
<style>
:root{--fg:#1f2328;--muted:#57606a;--bg:#fff;--card:#f6f8fa;--line:#d0d7de;
--ok-fg:#116329;--ok-bg:#dafbe1;--warn-fg:#6b4500;--warn-bg:#fff1c2;--bad-fg:#a0111f;--bad-bg:#ffe4e6;
--bar-full:#1a7f37;--bar-high:#bf8700;--bar-low:#cf222e;--bar-none:#d0d7de;--lat:#1f2328}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9da7b3;--bg:#0d1117;--card:#161b22;--line:#30363d;
--ok-fg:#7ee2a8;--ok-bg:#0f2d1c;--warn-fg:#f2cc60;--warn-bg:#3a2a05;--bad-fg:#ffa198;--bad-bg:#3d1114;
--bar-full:#3fb950;--bar-high:#d29922;--bar-low:#f85149;--bar-none:#30363d;--lat:#e6edf3}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:56rem;margin:0 auto;padding:1rem}
h1{font-size:1.25rem;margin:0 0 1rem}
h2{font-size:1.1rem;margin:2rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}
h3{font-size:1rem;margin:0 0 .5rem;display:flex;flex-wrap:wrap;gap:.5rem;align-items:baseline}
a{color:inherit}
.muted{color:var(--muted)}
.banner{border-radius:.5rem;padding:1rem;border-left:.5rem solid currentColor}
.banner p{margin:.25rem 0}
.state{font-size:1.25rem;font-weight:700}
.s-operational{color:var(--ok-fg);background:var(--ok-bg)}
.s-degraded{color:var(--warn-fg);background:var(--warn-bg)}
.s-outage{color:var(--bad-fg);background:var(--bad-bg)}
.overdue{font-weight:700}
.msg{white-space:pre-line;overflow-wrap:anywhere}
.card{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:1rem;margin:.75rem 0}
.badge{font-size:.85rem;font-weight:700;padding:0 .5rem;border-radius:1rem}
.up{color:var(--ok-fg);background:var(--ok-bg)}
.down{color:var(--bad-fg);background:var(--bad-bg)}
.wait{color:var(--muted);border:1px solid var(--line)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid var(--line);white-space:nowrap}
td.num,th.num{text-align:right}
svg.chart{display:block;width:100%;height:4.5rem;margin-top:.75rem}
.full{fill:var(--bar-full)}.high{fill:var(--bar-high)}.low{fill:var(--bar-low)}.nodata{fill:var(--bar-none)}
.lat{fill:none;stroke:var(--lat);stroke-width:1.5;stroke-linejoin:round;stroke-linecap:round}
.axis{display:flex;justify-content:space-between;font-size:.8rem;color:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:.25rem 1rem;font-size:.8rem;color:var(--muted);margin:.25rem 0 0;padding:0;list-style:none}
.sw{display:inline-block;width:.75rem;height:.75rem;border-radius:2px;vertical-align:middle;margin-right:.25rem}
.sw.full{background:var(--bar-full)}.sw.high{background:var(--bar-high)}.sw.low{background:var(--bar-low)}.sw.nodata{background:var(--bar-none)}
.err{overflow-wrap:anywhere;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
ol.updates{list-style:none;padding:0;margin:0}
ol.updates li{padding:.5rem 0;border-top:1px solid var(--line)}
ol.updates li:first-child{border-top:0}
footer{margin:2rem 0 1rem;font-size:.85rem;color:var(--muted)}
@media (max-width:30rem){main{padding:.5rem}.card{padding:.75rem}th,td{padding:.25rem;white-space:normal;overflow-wrap:anywhere}}
</style>
</head>
<body>
<main>
<h1>fixedgate status{{if .Admin}} <span class="muted">(operator view)</span>{{end}}</h1>

<section class="banner s-{{.State}}" aria-live="polite">
<p class="state"><span aria-hidden="true">{{.StateIcon}}</span> {{.StateLabel}}</p>
{{if .ChecksFailing}}<p>Our own checks see failures; no incident has been posted yet.</p>{{end}}
{{with .Open}}<p><strong>{{.Latest.State}}</strong> (impact: {{.Impact}}), updated <time datetime="{{.Latest.At.ISO}}">{{.Latest.At.Text}}</time></p>
<p class="msg">{{.Latest.Message}}</p>{{end}}
{{if .Overdue}}<p class="overdue">Update overdue: last update {{.OverdueMin}} min ago (updates are due every {{.IntervalText}}).</p>{{end}}
</section>
{{if .IncidentsError}}<div class="card"><p><strong>The incidents file does not load</strong>; the page shows the last good incidents.</p><p class="err">{{.IncidentsError}}</p></div>{{end}}

<h2>Checks</h2>
<p class="muted">Probes walk a customer's path through this proxy's own listener.</p>
{{range .Probes}}<article class="card">
<h3>{{.Name}} {{if .Up}}<span class="badge up">✓ Up</span>{{else if .NotRun}}<span class="badge wait">Not run yet</span>{{else}}<span class="badge down">✕ Down</span>{{end}}</h3>
<div class="scroll"><table>
<thead><tr><th scope="col">Window</th><th scope="col" class="num">Availability</th><th scope="col" class="num">p50</th><th scope="col" class="num">p99</th></tr></thead>
<tbody>{{range .Windows}}<tr><th scope="row">{{.Label}}</th><td class="num">{{.Availability}}</td><td class="num">{{.P50}}</td><td class="num">{{.P99}}</td></tr>{{end}}</tbody>
</table></div>
{{with .Chart}}<svg class="chart" viewBox="0 0 240 58" preserveAspectRatio="none" role="img" aria-label="{{.Label}}" xmlns="http://www.w3.org/2000/svg">
<title>{{.Label}}</title>
{{range .Bars}}<rect class="{{.Class}}" x="{{.X}}" y="34" width="8" height="24" rx="1"><title>{{.Title}}</title></rect>
{{end}}{{if .Line}}<path class="lat" d="{{.Line}}" vector-effect="non-scaling-stroke"><title>p99 latency (top of the chart: {{.MaxP99}})</title></path>{{end}}
</svg>
<div class="axis"><span>{{.From}}</span><span>{{.To}}</span></div>
<ul class="legend"><li><span class="sw full"></span>100%</li><li><span class="sw high"></span>99% or more</li><li><span class="sw low"></span>below 99%</li><li><span class="sw nodata"></span>no data</li>{{if .Line}}<li>line: p99 latency, top {{.MaxP99}}</li>{{end}}</ul>{{end}}
{{if $.Admin}}<p class="muted">Last run: {{or .Checked "never"}} · last failure: {{or .LastFailure "never"}} · failures in a row: {{.Consecutive}}</p>
{{if .LastError}}<p class="err">{{.LastError}}</p>{{end}}{{end}}
</article>
{{else}}<p class="muted">No probes are configured.</p>
{{end}}

{{if .Routes}}<h2>Backend fleets</h2>
<div class="scroll"><table>
<thead><tr><th scope="col">Route</th>{{if $.Admin}}<th scope="col">Upstream</th>{{end}}<th scope="col" class="num">Known</th><th scope="col" class="num">Healthy</th><th scope="col" class="num">Ejected</th></tr></thead>
<tbody>{{range .Routes}}<tr><td>{{.Name}}</td>{{if $.Admin}}<td>{{.Upstream}}</td>{{end}}<td class="num">{{.Backends}}</td><td class="num">{{.Healthy}}</td><td class="num">{{.Ejected}}</td></tr>
{{if $.Admin}}{{if .Addresses}}<tr><td colspan="5"><details><summary>Addresses of {{.Name}}</summary><ul>{{range .Addresses}}<li>{{.IP}}{{if .Ejected}} <strong>ejected</strong>{{end}}</li>{{end}}</ul></details></td></tr>
{{end}}{{end}}{{end}}</tbody>
</table></div>
{{end}}

{{if .HasContract}}<h2>Address changes</h2>
<p>Every address this proxy uses is listed in <a href="/ip-ranges.json">/ip-ranges.json</a>; new ones are announced there before they are used.</p>
{{if .Contract}}<div class="scroll"><table>
<thead><tr><th scope="col">Address</th><th scope="col">Direction</th><th scope="col">Change</th></tr></thead>
<tbody>{{range .Contract}}<tr><td>{{.CIDR}}</td><td>{{.Direction}}</td><td>{{.What}} <time datetime="{{.At.ISO}}">{{.At.Text}}</time></td></tr>
{{end}}</tbody>
</table></div>
{{else}}<p class="muted">No changes are scheduled.</p>{{end}}
{{end}}

<h2>Incidents</h2>
{{range .History}}<article class="card" id="incident-{{.ID}}">
<h3>{{.Title}} <span class="badge {{if .Resolved}}up{{else}}down{{end}}">{{if .Resolved}}Resolved{{else}}Ongoing ({{.Impact}}){{end}}</span></h3>
<ol class="updates">{{range .Updates}}<li><time datetime="{{.At.ISO}}">{{.At.Text}}</time> · <strong>{{.State}}</strong><div class="msg">{{.Message}}</div></li>
{{end}}</ol>
</article>
{{else}}<p class="muted">No incidents reported.</p>
{{end}}

<footer>Generated <time datetime="{{.Generated.ISO}}">{{.Generated.Text}}</time>; this page refreshes every minute. While an incident is open, updates are posted at least every {{.IntervalText}}.
Also as <a href="{{.PathJSON}}">JSON</a> and as an <a href="{{.PathAtom}}">Atom feed</a> of incident updates.</footer>
</main>
</body>
</html>
`
