package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func init() {
	nouns["deliveries"] = map[string]command{
		"list":     {"[--subscription ID] [--state S] [--sink-host H] [--type T]... [--event-source S] [--event-id ID] [--last-status 5xx] [--since 1h] [--limit N] [--watch 5s]: list deliveries, newest first", deliveriesList},
		"get":      {"ID: show one delivery", deliveriesGet},
		"attempts": {"ID: list a delivery's attempts", deliveriesAttempts},
		"redrive":  {"ID: send a dead delivery again (same webhook-id, a fresh series of attempts)", deliveriesRedrive},
		"resend":   {"ID: send a delivered or dead delivery again (same webhook-id, a fresh series of attempts)", deliveriesResend},
	}
	nouns["dead-letters"] = map[string]command{
		"list":    {"[--subscription ID] [--since 1h] [--limit N] [--watch 5s]: list dead deliveries, newest first", deadLettersList},
		"redrive": {"--subscription ID [--since 1h] [--rate N]: redrive a subscription's dead deliveries at a bounded rate, with a progress bar", deadLettersRedrive},
	}
}

// states are the delivery states by the names the CLI takes.
var states = map[string]heraldv1.DeliveryState{
	"pending":   heraldv1.DeliveryState_DELIVERY_STATE_PENDING,
	"in_flight": heraldv1.DeliveryState_DELIVERY_STATE_IN_FLIGHT,
	"delivered": heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED,
	"retrying":  heraldv1.DeliveryState_DELIVERY_STATE_RETRYING,
	"dead":      heraldv1.DeliveryState_DELIVERY_STATE_DEAD,
	"held":      heraldv1.DeliveryState_DELIVERY_STATE_HELD,
}

func deliveryRows(ds []*heraldv1.Delivery) [][]string {
	now := time.Now()
	rows := [][]string{{"ID", "SUBSCRIPTION", "EVENT", "TYPE", "STATE", "ATTEMPTS", "LAST", "CREATED"}}
	for _, d := range ds {
		last := "-"
		if d.GetLastStatusCode() != 0 {
			last = strconv.Itoa(int(d.GetLastStatusCode()))
		}
		if d.GetLastError() != "" {
			last += " " + cut(d.GetLastError(), 40)
		}
		rows = append(rows, []string{
			d.GetId(), d.GetSubscriptionId(), cut(d.GetEventSource()+" "+d.GetEventId(), 32), cut(d.GetEventType(), 32),
			enumName(d.GetState().String(), "DELIVERY_STATE_"), strconv.Itoa(int(d.GetAttempts())), strings.TrimSpace(last),
			ago(d.GetCreateTime(), now),
		})
	}
	return rows
}

// listDeliveries lists up to limit deliveries, page by page.
func (c *call) listDeliveries(req *heraldv1.ListDeliveriesRequest, limit int) error {
	svc, err := c.deliveries()
	if err != nil {
		return err
	}
	all := &heraldv1.ListDeliveriesResponse{}
	req.PageToken = ""
	for len(all.Deliveries) < limit {
		req.PageSize = int32(min(1000, limit-len(all.Deliveries)))
		resp, err := svc.ListDeliveries(c.ctx, req)
		if err != nil {
			return err
		}
		all.Deliveries = append(all.Deliveries, resp.GetDeliveries()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return c.print(all, deliveryRows(all.GetDeliveries()))
}

func deliveriesList(c *call) error {
	sub := c.flags.String("subscription", "", "only this subscription's deliveries")
	state := c.flags.String("state", "", "only deliveries in this state: pending, in_flight, delivered, retrying or dead")
	sinkHost := c.flags.String("sink-host", "", "only deliveries to sinks on this host (name, or host:port)")
	var types stringsFlag
	c.flags.Var(&types, "type", "only deliveries of events of this type (repeat for more)")
	source := c.flags.String("event-source", "", "only deliveries of events from this source")
	eventID := c.flags.String("event-id", "", "only deliveries of events with this id")
	lastStatus := c.flags.String("last-status", "", "only deliveries whose latest attempt got: 2xx, 3xx, 4xx, 5xx or none (no response)")
	since := c.flags.Duration("since", 0, "only deliveries created within this long (e.g. 1h)")
	limit := c.flags.Int("limit", 100, "the most deliveries listed")
	c.watchFlag()
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	req := &heraldv1.ListDeliveriesRequest{SubscriptionId: *sub, SinkHost: *sinkHost,
		EventTypes: types, EventSource: *source, EventId: *eventID}
	if *state != "" {
		st, ok := states[*state]
		if !ok {
			return usageError(fmt.Sprintf("--state %q: want pending, in_flight, delivered, retrying or dead", *state))
		}
		req.State = st
	}
	if *lastStatus != "" {
		class, ok := statusClasses[*lastStatus]
		if !ok {
			return usageError(fmt.Sprintf("--last-status %q: want 2xx, 3xx, 4xx, 5xx or none", *lastStatus))
		}
		req.LastStatusClass = class
	}
	return c.repeat(func() error {
		if *since > 0 {
			req.CreateTimeStart = timestamppb.New(time.Now().Add(-*since))
		}
		return c.listDeliveries(req, *limit)
	})
}

// statusClasses are --last-status's values.
var statusClasses = map[string]heraldv1.StatusClass{
	"2xx":  heraldv1.StatusClass_STATUS_CLASS_2XX,
	"3xx":  heraldv1.StatusClass_STATUS_CLASS_3XX,
	"4xx":  heraldv1.StatusClass_STATUS_CLASS_4XX,
	"5xx":  heraldv1.StatusClass_STATUS_CLASS_5XX,
	"none": heraldv1.StatusClass_STATUS_CLASS_NO_RESPONSE,
}

func deadLettersList(c *call) error {
	sub := c.flags.String("subscription", "", "only this subscription's dead letters")
	since := c.flags.Duration("since", 0, "only deliveries created within this long (e.g. 1h)")
	limit := c.flags.Int("limit", 100, "the most deliveries listed")
	c.watchFlag()
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	req := &heraldv1.ListDeliveriesRequest{SubscriptionId: *sub, State: heraldv1.DeliveryState_DELIVERY_STATE_DEAD}
	return c.repeat(func() error {
		if *since > 0 {
			req.CreateTimeStart = timestamppb.New(time.Now().Add(-*since))
		}
		return c.listDeliveries(req, *limit)
	})
}

func deliveriesGet(c *call) error {
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	svc, err := c.deliveries()
	if err != nil {
		return err
	}
	d, err := svc.GetDelivery(c.ctx, &heraldv1.GetDeliveryRequest{Id: args[0]})
	if err != nil {
		return err
	}
	return c.print(d, [][]string{
		{"ID", d.GetId()},
		{"SUBSCRIPTION", d.GetSubscriptionId()},
		{"EVENT", d.GetEventSource() + " " + d.GetEventId()},
		{"TYPE", d.GetEventType()},
		{"STATE", enumName(d.GetState().String(), "DELIVERY_STATE_")},
		{"WEBHOOK-ID", d.GetWebhookId()},
		{"ATTEMPTS", strconv.Itoa(int(d.GetAttempts()))},
		{"LAST STATUS", orDash(strconv.Itoa(int(d.GetLastStatusCode())))},
		{"LAST ERROR", orDash(d.GetLastError())},
		{"NEXT ATTEMPT", nextAttempt(d)},
		{"WORKFLOW", orDash(d.GetWorkflowId())},
		{"CREATED", d.GetCreateTime().AsTime().Format(time.RFC3339)},
	})
}

func nextAttempt(d *heraldv1.Delivery) string {
	if d.GetNextAttemptTime() == nil {
		return "-"
	}
	return d.GetNextAttemptTime().AsTime().Format(time.RFC3339) + " (" + ago(d.GetNextAttemptTime(), time.Now()) + ")"
}

func deliveriesAttempts(c *call) error {
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	svc, err := c.deliveries()
	if err != nil {
		return err
	}
	resp, err := svc.ListAttempts(c.ctx, &heraldv1.ListAttemptsRequest{DeliveryId: args[0]})
	if err != nil {
		return err
	}
	now := time.Now()
	rows := [][]string{{"#", "STARTED", "STATUS", "LATENCY", "ERROR", "RESPONSE"}}
	for _, a := range resp.GetAttempts() {
		rows = append(rows, []string{
			strconv.Itoa(int(a.GetNumber())), ago(a.GetStartTime(), now), orDash(strconv.Itoa(int(a.GetStatusCode()))),
			a.GetLatency().AsDuration().Round(time.Millisecond).String(), cut(orDash(a.GetError()), 40),
			cut(orDash(strings.Join(strings.Fields(string(a.GetResponseBody())), " ")), 40),
		})
	}
	return c.print(resp, rows)
}

func deliveriesRedrive(c *call) error {
	return c.onDelivery(func(svc heraldv1.DeliveryServiceClient, id string) (*heraldv1.Delivery, error) {
		return svc.RedriveDelivery(c.ctx, &heraldv1.RedriveDeliveryRequest{Id: id})
	})
}

func deliveriesResend(c *call) error {
	return c.onDelivery(func(svc heraldv1.DeliveryServiceClient, id string) (*heraldv1.Delivery, error) {
		return svc.ResendDelivery(c.ctx, &heraldv1.ResendDeliveryRequest{Id: id})
	})
}

// onDelivery runs a command that takes a delivery ID and prints the
// delivery the call returns.
func (c *call) onDelivery(do func(heraldv1.DeliveryServiceClient, string) (*heraldv1.Delivery, error)) error {
	args, err := c.parse(1, 1)
	if err != nil {
		return err
	}
	svc, err := c.deliveries()
	if err != nil {
		return err
	}
	d, err := do(svc, args[0])
	if err != nil {
		return err
	}
	return c.print(d, deliveryRows([]*heraldv1.Delivery{d}))
}

func deadLettersRedrive(c *call) error {
	sub := c.flags.String("subscription", "", "the subscription whose dead letters are redriven (required)")
	since := c.flags.Duration("since", 0, "only deliveries created within this long")
	rate := c.flags.Int("rate", 0, "redrives per second (default: Herald's, 10)")
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	if *sub == "" {
		return usageError("--subscription is required")
	}
	svc, err := c.deliveries()
	if err != nil {
		return err
	}
	req := &heraldv1.RedriveDeadLettersRequest{SubscriptionId: *sub, RatePerSecond: int32(*rate)}
	if *since > 0 {
		req.CreateTimeStart = timestamppb.New(time.Now().Add(-*since))
	}
	// The call returns when every dead letter is redriven, paced at the
	// rate: meanwhile one progress line, rewritten, counts down the dead
	// letters left.
	var (
		resp *heraldv1.RedriveDeadLettersResponse
		done = make(chan error, 1)
	)
	go func() {
		var err error
		resp, err = svc.RedriveDeadLetters(c.ctx, req)
		done <- err
	}()
	list := &heraldv1.ListDeliveriesRequest{SubscriptionId: req.GetSubscriptionId(),
		State: heraldv1.DeliveryState_DELIVERY_STATE_DEAD, CreateTimeStart: req.GetCreateTimeStart()}
	total := -1
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			if total >= 0 && c.output == "table" {
				fmt.Fprintf(c.io.Err, "\r%s  %d redriven\n", progressBar(1, 1), resp.GetRedriven())
			}
			return c.print(resp, [][]string{{"REDRIVEN"}, {strconv.Itoa(int(resp.GetRedriven()))}})
		case <-tick.C:
			if c.output != "table" {
				continue
			}
			left, more, err := c.countDeliveries(svc, list, maxCounted)
			if err != nil {
				continue // the progress line is a courtesy; the call goes on
			}
			total = max(total, left)
			fmt.Fprintf(c.io.Err, "\r%s  %s of %s dead letters left", progressBar(total-left, total), countText(left, more), countText(total, more))
		}
	}
}

// maxCounted is the most deliveries a progress line counts.
const maxCounted = 10_000

// countDeliveries counts the deliveries req lists, up to limit; more says
// there are more than that.
func (c *call) countDeliveries(svc heraldv1.DeliveryServiceClient, req *heraldv1.ListDeliveriesRequest, limit int) (n int, more bool, err error) {
	req = proto.Clone(req).(*heraldv1.ListDeliveriesRequest)
	req.PageSize = 1000
	for {
		resp, err := svc.ListDeliveries(c.ctx, req)
		if err != nil {
			return 0, false, err
		}
		n += len(resp.GetDeliveries())
		if resp.GetNextPageToken() == "" {
			return n, false, nil
		}
		if n >= limit {
			return n, true, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// countText is n, with a "+" when there were more.
func countText(n int, more bool) string {
	if more {
		return strconv.Itoa(n) + "+"
	}
	return strconv.Itoa(n)
}

// progressBar draws done of total (an empty bar while total is 0).
func progressBar(done, total int) string {
	const width = 30
	n := 0
	if total > 0 {
		n = min(width, width*done/total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}
