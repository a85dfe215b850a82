package cpuload

import (
	"runtime/metrics"
	"testing"
)

func TestSaturated(t *testing.T) {
	// Buckets: [0, 100µs), [100µs, 1ms), [1ms, 10ms), [10ms, +Inf).
	h := &metrics.Float64Histogram{Buckets: []float64{0, 100e-6, 1e-3, 10e-3, 1e9}}
	for _, tc := range []struct {
		name      string
		prev, now []uint64
		want      bool
	}{
		{"no earlier sample", nil, []uint64{0, 0, 50, 50}, false},
		{"nothing scheduled", []uint64{5, 5, 5, 5}, []uint64{5, 5, 5, 5}, false},
		{"all fast", []uint64{0, 0, 0, 0}, []uint64{900, 100, 0, 0}, false},
		{"1% slow", []uint64{0, 0, 0, 0}, []uint64{900, 90, 10, 0}, false},
		{"5% slow", []uint64{0, 0, 0, 0}, []uint64{900, 50, 40, 10}, true},
		// Only what was recorded since prev counts: 100 old slow ones, then
		// 1,000 fast ones.
		{"slow before, fast since", []uint64{0, 0, 100, 0}, []uint64{1000, 0, 100, 0}, false},
	} {
		h.Counts = tc.now
		if got := saturated(tc.prev, h); got != tc.want {
			t.Errorf("%s: saturated = %v, want %v", tc.name, got, tc.want)
		}
	}
}
