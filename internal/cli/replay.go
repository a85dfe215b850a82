package cli

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func init() {
	nouns["replay"] = map[string]command{
		"": {"--subscription ID --since 1h [--until 10m] [--state delivered|dead]... [--rate N] [--no-wait] | --id rpl_...: send a window's deliveries again, following its progress", replay},
	}
	Nouns = append(Nouns, "replay")
}

func replay(c *call) error {
	sub := c.flags.String("subscription", "", "the subscription whose deliveries are replayed")
	since := c.flags.Duration("since", 0, "the window starts this long ago (required to start a replay)")
	until := c.flags.Duration("until", 0, "the window ends this long ago (default: now)")
	var states stringsFlag
	c.flags.Var(&states, "state", "replay deliveries in this state: delivered or dead (repeat; default both)")
	rate := c.flags.Int("rate", 0, "resends started a second (default: Herald's, 10)")
	noWait := c.flags.Bool("no-wait", false, "start it and return its id, without following it")
	follow := c.flags.String("id", "", "follow a replay already started")
	if _, err := c.parse(0, 0); err != nil {
		return err
	}
	svc, err := c.deliveries()
	if err != nil {
		return err
	}
	op := &heraldv1.ReplayOperation{Id: *follow}
	if *follow == "" {
		if *sub == "" || *since <= 0 {
			return usageError("--subscription and --since are required (or --id to follow a replay)")
		}
		now := time.Now()
		req := &heraldv1.ReplayRequest{SubscriptionId: *sub, StartTime: timestamppb.New(now.Add(-*since)), RatePerSecond: int32(*rate)}
		if *until > 0 {
			req.EndTime = timestamppb.New(now.Add(-*until))
		}
		for _, s := range states {
			st, ok := states2[s]
			if !ok {
				return usageError(fmt.Sprintf("--state %q: want delivered or dead", s))
			}
			req.States = append(req.States, st)
		}
		if op, err = svc.Replay(c.ctx, req); err != nil {
			return err
		}
		fmt.Fprintf(c.io.Err, "replay %s started (Temporal workflow %s)\n", op.GetId(), op.GetWorkflowId())
		if *noWait {
			return c.print(op, [][]string{{"ID", "WORKFLOW"}, {op.GetId(), op.GetWorkflowId()}})
		}
	}
	// Follow it: one progress line, rewritten, until it is done.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		got, err := svc.GetReplay(c.ctx, &heraldv1.GetReplayRequest{Id: op.GetId()})
		if err != nil {
			return err
		}
		if c.output == "table" {
			fmt.Fprintf(c.io.Err, "\r%s  %d resent, %d skipped of %d examined", bar(got), got.GetResent(), got.GetSkipped(), got.GetExamined())
		}
		if got.GetDone() {
			if c.output == "table" {
				fmt.Fprintln(c.io.Err)
			}
			return c.print(got, [][]string{{"ID", "RESENT", "SKIPPED", "EXAMINED"},
				{got.GetId(), fmt.Sprint(got.GetResent()), fmt.Sprint(got.GetSkipped()), fmt.Sprint(got.GetExamined())}})
		}
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case <-tick.C:
		}
	}
}

var states2 = map[string]heraldv1.DeliveryState{
	"delivered": heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED,
	"dead":      heraldv1.DeliveryState_DELIVERY_STATE_DEAD,
}

// bar draws a replay's progress: its size is not known ahead, so it
// marks the deliveries examined, ten to a mark, and a full bar once done.
func bar(op *heraldv1.ReplayOperation) string {
	const marks = 30
	n := min(marks, int(op.GetExamined()+9)/10)
	if op.GetDone() {
		n = marks
	}
	return progressBar(n, marks)
}
