package metrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/scheduler"
)

// gauges reads metric name from the registry: origin label -> value.
func gauges(t *testing.T, name string) map[string]float64 {
	t.Helper()
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "origin" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// report makes the per-origin gauges read s, until the test ends.
func report(t *testing.T, s *scheduler.Scheduler) {
	metrics.Origins(func() []metrics.OriginStats {
		var out []metrics.OriginStats
		for _, o := range s.Origins() {
			out = append(out, metrics.OriginStats{Origin: o.Name, InFlight: o.InFlight, Waiting: o.Waiting, Limit: o.Limit, Open: o.Open})
		}
		return out
	})
	t.Cleanup(func() { metrics.Origins(func() []metrics.OriginStats { return nil }) })
}

func TestOriginGauges_MoveWithTheScheduler(t *testing.T) {
	s := scheduler.New(scheduler.Config{OriginConcurrency: 2, BreakerThreshold: 1, BreakerOpen: time.Hour})
	report(t, s)
	const a = "http://a.example:80"
	req := scheduler.Request{Origin: a, Key: "sub"}
	g1, err := s.Acquire(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := s.Acquire(context.Background(), req)
	waiter := make(chan error, 1)
	go func() { _, err := s.Acquire(context.Background(), req); waiter <- err }()
	for s.Origin(a).Waiting == 0 {
		time.Sleep(time.Millisecond)
	}
	for _, c := range []struct {
		metric string
		want   float64
	}{
		{"herald_origin_requests_in_flight", 2},
		{"herald_origin_requests_waiting", 1},
		{"herald_origin_limit", 2},
		{"herald_origin_breaker_open", 0},
	} {
		if got := gauges(t, c.metric)[a]; got != c.want {
			t.Errorf("%s{origin=%q} = %g, want %g", c.metric, a, got, c.want)
		}
	}
	// A timeout opens the breaker (threshold 1): the waiter is refused,
	// the limit halves.
	g1.Done(scheduler.Unreachable)
	if err := <-waiter; err == nil {
		t.Fatal("the waiter started with the breaker open")
	}
	g2.Done(scheduler.Unreachable)
	for _, c := range []struct {
		metric string
		want   float64
	}{
		{"herald_origin_requests_in_flight", 0},
		{"herald_origin_requests_waiting", 0},
		{"herald_origin_limit", 1},
		{"herald_origin_breaker_open", 1},
	} {
		if got := gauges(t, c.metric)[a]; got != c.want {
			t.Errorf("after the breaker opened: %s{origin=%q} = %g, want %g", c.metric, a, got, c.want)
		}
	}
}

// TestOriginGauges_TheBusiestHaveSeriesTheRestAreSummed: with more origins
// than MaxOriginSeries, those whose breaker is open and then the busiest
// have series of their own; the rest are one "other" series.
func TestOriginGauges_TheBusiestHaveSeriesTheRestAreSummed(t *testing.T) {
	var all []metrics.OriginStats
	for i := range metrics.MaxOriginSeries + 10 {
		// Origin i has i requests in flight and one waiting; two quiet
		// origins have their breaker open.
		all = append(all, metrics.OriginStats{Origin: fmt.Sprintf("http://o%02d:80", i), InFlight: i, Waiting: 1, Limit: 4})
	}
	all[0].Open, all[1].Open = true, true
	metrics.Origins(func() []metrics.OriginStats { return append([]metrics.OriginStats(nil), all...) })
	t.Cleanup(func() { metrics.Origins(func() []metrics.OriginStats { return nil }) })

	inFlight := gauges(t, "herald_origin_requests_in_flight")
	if len(inFlight) != metrics.MaxOriginSeries+1 {
		t.Errorf("%d series, want %d and %q", len(inFlight), metrics.MaxOriginSeries, metrics.OtherOrigins)
	}
	for _, o := range []string{"http://o00:80", "http://o01:80", "http://o29:80", "http://o12:80"} {
		if _, ok := inFlight[o]; !ok {
			t.Errorf("no series for %s", o)
		}
	}
	if _, ok := inFlight["http://o11:80"]; ok {
		t.Error("a series for http://o11:80, which is among the quietest")
	}
	// Origins 2 to 11 are summed: 2+3+...+11 in flight, one waiting each.
	if got := inFlight[metrics.OtherOrigins]; got != 65 {
		t.Errorf("other in flight = %g, want 65", got)
	}
	if got := gauges(t, "herald_origin_requests_waiting")[metrics.OtherOrigins]; got != 10 {
		t.Errorf("other waiting = %g, want 10", got)
	}
	if got := gauges(t, "herald_origin_breaker_open"); got["http://o00:80"] != 1 || got[metrics.OtherOrigins] != 0 {
		t.Errorf("breaker gauges = %v", got)
	}
}
