package bench

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
)

// LoadConfig configures the load generator. Publishing stops at Events
// events or after Duration, whichever comes first; at least one of them
// must be set.
type LoadConfig struct {
	// Clients are the Publish clients; publisher i uses Clients[i%len].
	Clients []heraldv1.PublishServiceClient
	// Events is how many events to publish (0: no count limit).
	Events int
	// Duration bounds the publishing time (0: no time limit).
	Duration time.Duration
	// Rate is events per second (0: as fast as the publishers go).
	Rate float64
	// Publishers is how many Publish calls are in flight at most.
	Publishers int
	// Batch is how many events each Publish call carries.
	Batch int
	// Prefix starts every event id; the sequence number follows.
	Prefix string
	// Source is every event's source, unless Sources is set: then event
	// n's source is Sources[n % len(Sources)] (one per sink).
	Source  string
	Sources []string
	// CallTimeout bounds each Publish call.
	CallTimeout time.Duration
}

// LoadRun is what the load generator did.
type LoadRun struct {
	Sent       []Sent          // every event whose Publish call was made
	Calls      int             // Publish calls made
	CallErrors int             // calls that failed
	FirstError string          // the first call's error, if any
	NoMatch    int             // accepted events that matched no subscription
	Duplicates int             // events Herald called DUPLICATE
	Latency    []time.Duration // per call, unsorted
	MaxLag     time.Duration   // rate mode: the most a call started behind schedule
	Start      time.Time
	End        time.Time // when the last call returned
}

// batchJob is one Publish call to make.
type batchJob struct {
	seq int       // first event's sequence number
	n   int       // events
	due time.Time // rate mode: when it should start
}

// publisher is one goroutine's share of a LoadRun.
type publisher struct {
	sent       []Sent
	latency    []time.Duration
	calls      int
	errors     int
	firstError string
	noMatch    int
	duplicates int
	maxLag     time.Duration
	last       time.Time // when the latest call returned
}

// Load publishes 1 KiB JSON events to Herald as cfg says and returns when
// done, when ctx is done or when the time limit is reached.
func Load(ctx context.Context, cfg LoadConfig) *LoadRun {
	pubs := make([]publisher, max(cfg.Publishers, 1))
	batch := min(max(cfg.Batch, 1), 1000)
	callTimeout := cfg.CallTimeout
	if callTimeout <= 0 {
		callTimeout = 30 * time.Second
	}
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	// remaining is how many events of a batch at seq are still to send.
	remaining := func(seq int) int {
		if cfg.Events > 0 {
			return min(batch, cfg.Events-seq)
		}
		return batch
	}

	jobs := make(chan batchJob)
	var wg sync.WaitGroup
	if cfg.Rate > 0 {
		// A pacer hands out batches at their due times.
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(jobs)
			timer := time.NewTimer(0)
			defer timer.Stop()
			<-timer.C
			for seq := 0; ; seq += batch {
				n := remaining(seq)
				due := start.Add(time.Duration(float64(seq) / cfg.Rate * float64(time.Second)))
				if n <= 0 || (!deadline.IsZero() && !due.Before(deadline)) {
					return
				}
				if d := time.Until(due); d > 0 {
					timer.Reset(d)
					select {
					case <-timer.C:
					case <-ctx.Done():
						return
					}
				}
				select {
				case jobs <- batchJob{seq: seq, n: n, due: due}:
				case <-ctx.Done():
					return
				}
			}
		}()
	} else {
		// Publishers take batches as fast as they can.
		var next atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(jobs)
			for ctx.Err() == nil {
				seq := int(next.Add(int64(batch)) - int64(batch))
				n := remaining(seq)
				if n <= 0 || (!deadline.IsZero() && !time.Now().Before(deadline)) {
					return
				}
				select {
				case jobs <- batchJob{seq: seq, n: n}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	for i := range pubs {
		p := &pubs[i]
		client := cfg.Clients[i%len(cfg.Clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				p.publish(ctx, client, cfg, job, callTimeout)
			}
		}()
	}
	wg.Wait()

	run := &LoadRun{Start: start}
	for i := range pubs {
		p := &pubs[i]
		run.Sent = append(run.Sent, p.sent...)
		run.Latency = append(run.Latency, p.latency...)
		run.Calls += p.calls
		run.CallErrors += p.errors
		if run.FirstError == "" {
			run.FirstError = p.firstError
		}
		run.NoMatch += p.noMatch
		run.Duplicates += p.duplicates
		run.MaxLag = max(run.MaxLag, p.maxLag)
		if p.last.After(run.End) {
			run.End = p.last
		}
	}
	if run.End.IsZero() {
		run.End = time.Now()
	}
	return run
}

// publish makes one Publish call for job and books the outcome.
func (p *publisher) publish(ctx context.Context, client heraldv1.PublishServiceClient, cfg LoadConfig, job batchJob, timeout time.Duration) {
	events := make([]*cloudeventsv1.CloudEvent, job.n)
	sinks := make([]int, job.n)
	for i := range events {
		seq := job.seq + i
		source := cfg.Source
		if len(cfg.Sources) > 0 {
			sinks[i] = seq % len(cfg.Sources)
			source = cfg.Sources[sinks[i]]
		}
		events[i] = &cloudeventsv1.CloudEvent{
			Id:          cfg.Prefix + strconv.Itoa(seq),
			Source:      source,
			SpecVersion: "1.0",
			Type:        eventType,
			Attributes: map[string]*cloudeventsv1.CloudEvent_CloudEventAttributeValue{
				"datacontenttype": {Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: "application/json"}},
			},
			Data: &cloudeventsv1.CloudEvent_TextData{TextData: eventData(seq)},
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	if !job.due.IsZero() {
		p.maxLag = max(p.maxLag, start.Sub(job.due))
	}
	resp, err := client.Publish(cctx, &heraldv1.PublishRequest{Events: events})
	p.last = time.Now()
	p.latency = append(p.latency, p.last.Sub(start))
	cancel()
	p.calls++
	if err != nil {
		p.errors++
		if p.firstError == "" {
			p.firstError = status.Convert(err).String()
		}
	}
	results := resp.GetResults()
	for i, e := range events {
		s := Sent{ID: e.GetId(), At: start, Sink: sinks[i]}
		if err == nil && i < len(results) {
			r := results[i]
			switch {
			case r.GetStatus() == heraldv1.PublishStatus_PUBLISH_STATUS_DUPLICATE:
				p.duplicates++
			case r.GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_ACCEPTED:
			case len(r.GetDeliveryIds()) == 0:
				p.noMatch++
			default:
				s.Accepted = true
			}
		}
		p.sent = append(p.sent, s)
	}
}
