package cli

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func init() {
	nouns["endpoints"] = map[string]command{
		"health": {"[--tenant T] [--label k=v]... [--watch 5s]: every subscription's endpoint health, worst first", endpointsHealth},
	}
	Nouns = append(Nouns, "endpoints")
}

// endpointHealth is a subscription and its health, for the table.
type endpointHealth struct {
	sub    *heraldv1.Subscription
	health *heraldv1.SubscriptionHealth
}

func endpointsHealth(c *call) error {
	tenant := c.flags.String("tenant", "", "only this tenant's subscriptions")
	labels := labelsFlag{}
	c.flags.Var(labels, "label", "only subscriptions with this label, key=value")
	c.watchFlag()
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	return c.repeat(func() error { return c.printHealth(*tenant, labels) })
}

// printHealth prints the health of tenant's subscriptions with labels,
// worst first.
func (c *call) printHealth(tenant string, labels map[string]string) error {
	subs, err := c.listSubscriptions(tenant, labels)
	if err != nil {
		return err
	}
	svc, err := c.subs()
	if err != nil {
		return err
	}
	all := make([]endpointHealth, len(subs))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, 8)
	)
	for i, s := range subs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h, err := svc.GetSubscriptionHealth(c.ctx, &heraldv1.GetSubscriptionHealthRequest{Id: s.GetId()})
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			all[i] = endpointHealth{sub: s, health: h}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	// Worst first: failures in a row, then the hour's first-attempt
	// success, then what is being retried.
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i].health, all[j].health
		if a.GetConsecutiveFailures() != b.GetConsecutiveFailures() {
			return a.GetConsecutiveFailures() > b.GetConsecutiveFailures()
		}
		if ra, rb := rate(a.GetLastHour()), rate(b.GetLastHour()); ra != rb {
			return ra < rb
		}
		return a.GetRetrying() > b.GetRetrying()
	})
	now := time.Now()
	out := &heraldv1.ListSubscriptionsResponse{}
	rows := [][]string{{"SUBSCRIPTION", "NAME", "SINK", "STATE", "OK 1H", "P95 1H", "DELIVERIES 1H", "FAILS IN A ROW", "RETRYING", "WAITING", "LAST SUCCESS", "LAST FAILURE"}}
	for _, e := range all {
		h, w := e.health, e.health.GetLastHour()
		out.Subscriptions = append(out.Subscriptions, e.sub)
		ok := "-"
		if w.GetDeliveries() > 0 {
			ok = fmt.Sprintf("%.1f%%", 100*w.GetFirstAttemptSuccessRate())
		}
		p95 := "-"
		if w.GetLatencyP95() != nil {
			p95 = w.GetLatencyP95().AsDuration().Round(time.Millisecond).String()
		}
		lastFail := ago(h.GetLastFailureTime(), now)
		if h.GetLastFailureTime() != nil {
			lastFail += " (" + strconv.Itoa(int(h.GetLastFailureStatus())) + " " + cut(h.GetLastFailureError(), 30) + ")"
		}
		rows = append(rows, []string{
			e.sub.GetId(), cut(orDash(e.sub.GetDisplayName()), 20), cut(e.sub.GetSink(), 40), enumName(e.sub.GetState().String(), "SUBSCRIPTION_STATE_"),
			ok, p95, strconv.Itoa(int(w.GetDeliveries())), strconv.Itoa(int(h.GetConsecutiveFailures())),
			strconv.Itoa(int(h.GetRetrying())), strconv.Itoa(int(h.GetWaiting())), ago(h.GetLastSuccessTime(), now), lastFail,
		})
	}
	if c.output != "table" {
		// The health of each, in order, as one list.
		list := &heraldv1.ListSubscriptionHealthResponse{}
		for _, e := range all {
			list.Health = append(list.Health, e.health)
		}
		return c.print(list, nil)
	}
	return c.print(out, rows)
}

// rate is a window's first-attempt success, 1 for a window with nothing
// in it (nothing failing).
func rate(w *heraldv1.HealthWindow) float64 {
	if w.GetDeliveries() == 0 {
		return 1
	}
	return w.GetFirstAttemptSuccessRate()
}
