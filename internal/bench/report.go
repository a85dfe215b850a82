package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

func writeJSON(out io.Writer, res *Result) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// writeTable prints res for people: settings, then one row per measure
// with a Herald column and, with a baseline, a baseline column.
func writeTable(out io.Writer, res *Result) error {
	m, s, h, b := res.Machine, res.Settings, res.Herald, res.Baseline
	var w strings.Builder
	fmt.Fprintf(&w, "Herald bench, %s\n", res.Date.Format(time.RFC3339))
	fmt.Fprintf(&w, "machine   %s, %d CPUs (GOMAXPROCS %d), %s RAM, %s, %s\n",
		m.CPU, m.NProc, m.GOMAXPROCS, bytesIEC(m.MemTotal), m.GoVersion, m.OS)
	mode := s.Mode
	if s.Target != "" {
		mode += " " + s.Target
	}
	fmt.Fprintf(&w, "mode      %s\n", mode)
	fmt.Fprintf(&w, "load      %s\n", describeSettings(s))
	fmt.Fprintf(&w, "resources %s\n\n", h.Usage.Scope)

	tw := tabwriter.NewWriter(&w, 0, 0, 2, ' ', 0)
	row := func(name, herald, baseline string) {
		if b == nil {
			fmt.Fprintf(tw, "%s\t%s\n", name, herald)
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, herald, baseline)
	}
	row("", "Herald", "baseline")
	row("events published / sent", fmt.Sprintf("%d (%d accepted)", h.Publish.Events, h.Publish.Accepted), bval(b, func(b *BaselineResult) string {
		return fmt.Sprint(b.Events)
	}))
	row("publish calls (errors)", fmt.Sprintf("%d (%d)", h.Publish.Calls, h.Publish.Errors), "-")
	row("publish throughput", rate(h.Publish.Rate), "-")
	row("publish latency p50/p95/p99", triple(h.Publish.Latency), "-")
	if s.Rate > 0 {
		row("publish max lag behind schedule", ms(h.Publish.MaxLag), "-")
	}
	row("delivery throughput", rate(h.DeliveryRate), bval(b, func(b *BaselineResult) string { return rate(b.Rate) }))
	row("publish-to-delivered p50/p95/p99", triple(h.Delivery.Latency), bval(b, func(b *BaselineResult) string {
		return triple(b.Delivery.Latency)
	}))
	row("delivered / lost / duplicates", counts(h.Delivery), bval(b, func(b *BaselineResult) string { return counts(b.Delivery) }))
	if s.FailRate > 0 {
		row("  of events delivered first time", triple(h.Delivery.FirstAttempt), "-")
		row("  of events failed once, retried", triple(h.Delivery.Retried), "-")
		row("first attempts failed / retried", fmt.Sprintf("%d / %d", h.Sink.Failed, h.Sink.Retried), "-")
	}
	if bs := h.Bad; bs != nil {
		row(fmt.Sprintf("bad sinks (%d, %s): requests / delivered", bs.Sinks, bs.Mode),
			fmt.Sprintf("%d / %d of %d", bs.Requests, bs.Delivery.Delivered, bs.Expected), "-")
	}
	if s.Outage > 0 && h.Recovered > 0 {
		row("drained after the outage ended", h.Recovered.Round(time.Millisecond).String(), "-")
	}
	row("peak in flight / waiting", fmt.Sprintf("%d / %d", h.Peak.InFlight, h.Peak.Waiting), "-")
	row("peak sink connections / goroutines", fmt.Sprintf("%d / %d", h.Peak.Connections, h.Peak.Goroutines), "-")
	if len(h.Peak.Refused) > 0 {
		row("put back: over share / breaker / lease", fmt.Sprintf("%d / %d / %d",
			h.Peak.Refused["queue_full"], h.Peak.Refused["breaker_open"], h.Peak.Refused["deadline"]), "-")
	}
	row("sink: bad signatures / malformed", fmt.Sprintf("%d / %d", h.Sink.BadSignature, h.Sink.Malformed),
		bval(b, func(b *BaselineResult) string { return fmt.Sprintf("%d / %d", b.Sink.BadSignature, b.Sink.Malformed) }))
	row("wall time", h.Usage.Wall.Round(time.Millisecond).String(), bval(b, func(b *BaselineResult) string {
		return b.Usage.Wall.Round(time.Millisecond).String()
	}))
	row("CPU seconds (cores busy)", cpu(h.Usage), bval(b, func(b *BaselineResult) string { return cpu(b.Usage) }))
	row("peak RSS", peak(h.Usage), bval(b, func(b *BaselineResult) string { return peak(b.Usage) }))
	row("machine CPU busy (all processes)", pct(h.Usage.MachineBusy), bval(b, func(b *BaselineResult) string {
		return pct(b.Usage.MachineBusy)
	}))
	if err := tw.Flush(); err != nil {
		return err
	}
	if b != nil {
		if bb := res.BaselineBefore; bb != nil {
			fmt.Fprintf(&w, "\nBaseline before Herald %s, after %s (the column above): the ratio uses their mean.", rate(bb.Rate), rate(b.Rate))
		}
		fmt.Fprintf(&w, "\nHerald delivers at %.1f%% of the baseline (%s vs %s).\n", 100*res.Ratio, rate(h.DeliveryRate), rate(res.baselineRate()))
		fmt.Fprintf(&w, "The baseline's publish-to-delivered is from its request's start to the sink.\n")
	}
	if h.Publish.FirstError != "" {
		fmt.Fprintf(&w, "first publish error: %s\n", h.Publish.FirstError)
	}
	if h.Publish.NoMatch > 0 || h.Publish.Duplicates > 0 {
		fmt.Fprintf(&w, "publish: %d events matched no subscription, %d were called duplicates\n", h.Publish.NoMatch, h.Publish.Duplicates)
	}
	if h.Delivery.Lost > 0 {
		fmt.Fprintf(&w, "lost means not delivered within the drain timeout (%s).\n", s.DrainTimeout)
	}
	_, err := io.WriteString(out, w.String())
	return err
}

func bval(b *BaselineResult, f func(*BaselineResult) string) string {
	if b == nil {
		return ""
	}
	return f(b)
}

func describeSettings(s Settings) string {
	var parts []string
	if s.Events > 0 {
		parts = append(parts, fmt.Sprintf("%d events of %d B", s.Events, s.EventSize))
	} else {
		parts = append(parts, fmt.Sprintf("events of %d B", s.EventSize))
	}
	if s.Duration != MaxLoadTime {
		parts = append(parts, "for up to "+s.Duration.String())
	}
	if s.Rate > 0 {
		parts = append(parts, fmt.Sprintf("at %g/s", s.Rate))
	} else {
		parts = append(parts, "as fast as possible")
	}
	parts = append(parts, fmt.Sprintf("%d publishers", s.Publishers), fmt.Sprintf("%d per call", s.Batch))
	if s.FailRate > 0 {
		parts = append(parts, fmt.Sprintf("fail rate %g", s.FailRate))
	}
	if s.Sinks > 1 || s.SinkLatency != "" {
		lat := "at once"
		if l, err := ParseLatency(s.SinkLatency); err == nil && (l.Fixed > 0 || l.Sigma > 0) {
			lat = "in " + l.String()
		}
		parts = append(parts, fmt.Sprintf("%d sinks answering %s", s.Sinks, lat))
	}
	if s.BadSinks > 0 {
		parts = append(parts, fmt.Sprintf("%d of them bad (%s)", s.BadSinks, s.BadSinkMode))
	}
	if s.RateLimit > 0 {
		parts = append(parts, fmt.Sprintf("rate limit %d/min per subscription", s.RateLimit))
	}
	if s.Outage > 0 {
		parts = append(parts, "every sink down for the first "+s.Outage.String())
	}
	if s.RetryMax > 0 {
		parts = append(parts, "retries wait at most "+s.RetryMax.String())
	}
	parts = append(parts, "drain timeout "+s.DrainTimeout.String())
	return strings.Join(parts, ", ")
}

func rate(r float64) string { return fmt.Sprintf("%.0f/s", r) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func triple(l Latency) string {
	if l.Count == 0 {
		return "-"
	}
	return ms(l.P50) + " / " + ms(l.P95) + " / " + ms(l.P99)
}

func counts(d Delivery) string {
	return fmt.Sprintf("%d / %d / %d", d.Delivered, d.Lost, d.Duplicates)
}

func cpu(u Usage) string { return fmt.Sprintf("%.2f s (%.2f)", u.CPUSeconds, u.Cores) }

func peak(u Usage) string {
	s := bytesIEC(u.PeakRSS)
	if !u.PeakRSSReset {
		s += " (process lifetime)"
	}
	return s
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

// bytesIEC formats n bytes as MiB or GiB.
func bytesIEC(n int64) string {
	switch {
	case n <= 0:
		return "?"
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	default:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
}
