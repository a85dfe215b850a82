package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/store"
)

// Bench runs the store benchmarks against the stores open returns, one new
// store per benchmark. Each reports deliveries/s.
//
//   - EventInsertBatch: one batch of 100 events with one delivery each and
//     1 KiB payloads, the publish path's group commit.
//   - ClaimUpdate: claim 256 deliveries, then complete them in one
//     DeliveryUpdateBatch with an attempt each, the dispatcher's loop.
//   - SuccessPath: store 1,000 events with one delivery each already
//     claimed (as the publisher does for its local dispatcher), then
//     record all 1,000 delivered with their attempt: every store write a
//     successful delivery makes.
func Bench(b *testing.B, open func(tb testing.TB) store.Store) {
	b.Run("EventInsertBatch", func(b *testing.B) { benchEventInsertBatch(b, open(b)) })
	b.Run("ClaimUpdate", func(b *testing.B) { benchClaimUpdate(b, open(b)) })
	b.Run("SuccessPath", func(b *testing.B) { benchSuccessPath(b, open(b)) })
	b.Run("TokenTake", func(b *testing.B) { benchTokenTake(b, open(b)) })
}

// benchTokenTake is one lease of rate tokens: a round trip that refills
// the bucket and takes from it (the bucket always has tokens).
func benchTokenTake(b *testing.B, s store.Store) {
	now := time.Now()
	p := store.TokenTakeParams{Key: "sub:bench", Rate: 1e9, Burst: 1e9, Want: 1}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Now = now.Add(time.Duration(i) * time.Millisecond)
		if _, err := s.TokenTake(b.Context(), p); err != nil {
			b.Fatal(err)
		}
	}
}

const (
	benchEvents  = 100
	benchClaim   = 256
	benchPayload = 1 << 10
)

// benchBatch returns n new events, each with one pending delivery due at
// now.
func benchBatch(seq *int, n int, payload []byte, now time.Time) []store.EventInsertParams {
	params := make([]store.EventInsertParams, n)
	for i := range params {
		*seq++
		params[i] = store.EventInsertParams{
			Event: store.Event{Source: "/bench", ID: fmt.Sprint(*seq), Type: "com.example.bench", Payload: payload, CreatedAt: now},
			Deliveries: []store.Delivery{{
				ID: id.New(id.Delivery), SubscriptionID: "sub_bench", State: store.DeliveryPending, NextAt: now,
			}},
		}
	}
	return params
}

func benchEventInsertBatch(b *testing.B, s store.Store) {
	payload := make([]byte, benchPayload)
	now := time.Now().Truncate(time.Millisecond)
	seq := 0
	b.SetBytes(benchEvents * benchPayload)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		params := benchBatch(&seq, benchEvents, payload, now)
		b.StartTimer()
		if _, err := s.EventInsertBatch(b.Context(), params); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchEvents)/b.Elapsed().Seconds(), "deliveries/s")
}

func benchClaimUpdate(b *testing.B, s store.Store) {
	payload := make([]byte, benchPayload)
	now := time.Now().Truncate(time.Millisecond)
	seq := 0
	updates := make([]store.DeliveryUpdate, benchClaim)
	attempts := make([]store.Attempt, benchClaim)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for range benchClaim / benchEvents {
			if _, err := s.EventInsertBatch(b.Context(), benchBatch(&seq, benchEvents, payload, now)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.EventInsertBatch(b.Context(), benchBatch(&seq, benchClaim%benchEvents, payload, now)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		ds, err := s.DeliveryClaim(b.Context(), store.DeliveryClaimParams{Limit: benchClaim, Now: now, LeaseUntil: now.Add(time.Minute)})
		if err != nil {
			b.Fatal(err)
		}
		if len(ds) != benchClaim {
			b.Fatalf("claimed %d deliveries, want %d", len(ds), benchClaim)
		}
		for i, d := range ds {
			attempts[i] = store.Attempt{Number: 1, StartedAt: now, StatusCode: 200, Latency: time.Millisecond}
			updates[i] = store.DeliveryUpdate{
				ID: d.ID, State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200,
				ExpectState: store.DeliveryInFlight, Attempt: &attempts[i],
			}
		}
		if err := s.DeliveryUpdateBatch(b.Context(), updates); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchClaim)/b.Elapsed().Seconds(), "deliveries/s")
}

func benchSuccessPath(b *testing.B, s store.Store) {
	const n = 1000
	payload := make([]byte, benchPayload)
	now := time.Now().Truncate(time.Millisecond)
	seq := 0
	updates := make([]store.DeliveryUpdate, n)
	attempts := make([]store.Attempt, n)
	for b.Loop() {
		b.StopTimer()
		params := benchBatch(&seq, n, payload, now)
		for i := range params {
			d := &params[i].Deliveries[0]
			d.State, d.LeaseUntil = store.DeliveryInFlight, now.Add(time.Minute)
			attempts[i] = store.Attempt{Number: 1, StartedAt: now, StatusCode: 200, Latency: time.Millisecond}
			updates[i] = store.DeliveryUpdate{
				ID: d.ID, State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200,
				ExpectState: store.DeliveryInFlight, Attempt: &attempts[i],
			}
		}
		b.StartTimer()
		if _, err := s.EventInsertBatch(b.Context(), params); err != nil {
			b.Fatal(err)
		}
		if err := s.DeliveryUpdateBatch(b.Context(), updates); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
}
