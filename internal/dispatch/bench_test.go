package dispatch_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/clusterlimit"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/dispatch"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
)

// BenchmarkDispatchClaimComplete is the dispatcher's side of deliveries
// stored pending (another node's, or the overflow): claim them from SQLite
// in batches, sign and POST each to a loopback sink, and record the
// results. An op is one delivery, from claim to its recorded result.
func BenchmarkDispatchClaimComplete(b *testing.B) { benchClaimComplete(b, false) }

// BenchmarkDispatchClaimCompleteClusterLimits is the same with the limits
// that hold across nodes in place (a clusterlimit.Limiter on the same
// store, refreshing): the subscription has no rate limit, so no request
// may touch the store for a token, and the cost should be none.
func BenchmarkDispatchClaimCompleteClusterLimits(b *testing.B) { benchClaimComplete(b, true) }

func benchClaimComplete(b *testing.B, cluster bool) {
	ctx := context.Background()
	var got atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer sink.Close()
	s, cat := newStore(b, map[string]string{"sub_bench": sink.URL})
	now := time.Now()

	data := `{"pad":"` + strings.Repeat("x", 1010) + `"}`
	for i := 0; i < b.N; i += 1000 {
		var params []store.EventInsertParams
		for j := i; j < min(i+1000, b.N); j++ {
			pe := &cloudeventsv1.CloudEvent{Id: fmt.Sprint(j), Source: "/bench", SpecVersion: "1.0", Type: "bench",
				Data: &cloudeventsv1.CloudEvent_TextData{TextData: data}}
			payload, _ := proto.Marshal(pe)
			params = append(params, store.EventInsertParams{
				Event: store.Event{Source: "/bench", ID: fmt.Sprint(j), Type: "bench", Payload: payload, CreatedAt: now},
				Deliveries: []store.Delivery{{ID: fmt.Sprintf("dlv_%09d", j), SubscriptionID: "sub_bench",
					State: store.DeliveryPending, NextAt: now}},
			})
		}
		if _, err := s.EventInsertBatch(ctx, params); err != nil {
			b.Fatal(err)
		}
	}

	a := &attempt.Attempter{Sender: delivery.NewSender(), Scheduler: scheduler.New(scheduler.Config{})}
	runCtx, stop := context.WithCancel(ctx)
	var limiter *clusterlimit.Limiter
	if cluster {
		limiter = clusterlimit.New(s, clusterlimit.Config{})
		go limiter.Run(runCtx)
		a = &attempt.Attempter{Sender: delivery.NewSender(), Scheduler: scheduler.New(scheduler.Config{Tokens: limiter}), Cluster: limiter}
	}
	d := dispatch.New(dispatch.Config{BatchSize: 2048}, s, cat, a, stuckHandoff{ctx})
	done := make(chan struct{})
	b.ResetTimer()
	go func() {
		defer close(done)
		_ = d.Run(runCtx)
	}()
	for got.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	stop()
	<-done // Run returns once every result is recorded
	b.StopTimer()

	delivered, err := s.DeliveryList(ctx, store.DeliveryListParams{State: store.DeliveryDelivered, Limit: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	if len(delivered) != b.N {
		b.Fatalf("%d of %d deliveries recorded as delivered", len(delivered), b.N)
	}
	if limiter != nil && limiter.Trips() != 0 {
		b.Fatalf("a subscription without a rate limit leased tokens %d times", limiter.Trips())
	}
}
