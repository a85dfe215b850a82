package publish_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/publish"
)

// BenchmarkPublishGroupCommit is the store half of a single-event Publish
// call without gRPC: 64 callers at once, each publishing one 1 KiB event
// that matches one subscription, on SQLite with every commit fsynced.
// Concurrent calls share transactions; events/commit reports how many.
func BenchmarkPublishGroupCommit(b *testing.B) {
	p, cs := setupWith(b, publish.Config{}, "bench")
	data := `{"pad":"` + strings.Repeat("x", 1010) + `"}`
	var seq atomic.Int64
	b.SetParallelism(32) // 64 goroutines on 2 Ps
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := strconv.FormatInt(seq.Add(1), 10)
			e := &cloudeventsv1.CloudEvent{Id: id, Source: "/bench", SpecVersion: "1.0", Type: "bench",
				Data: &cloudeventsv1.CloudEvent_TextData{TextData: data}}
			res, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{e})
			if err != nil {
				b.Error(err)
				return
			}
			if len(res) != 1 || len(res[0].DeliveryIDs) != 1 {
				b.Errorf("result = %+v, want one delivery", res)
				return
			}
		}
	})
	b.StopTimer()
	if n := cs.txs.Load(); n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "events/commit")
	}
}
