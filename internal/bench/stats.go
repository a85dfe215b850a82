package bench

import (
	"slices"
	"time"
)

// Latency summarises a set of durations.
type Latency struct {
	Count int           `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P95   time.Duration `json:"p95_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summarize returns the count, mean, maximum and nearest-rank percentiles
// of ds. It sorts ds in place. An empty ds gives the zero Latency.
func Summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Latency{
		Count: len(ds),
		Mean:  sum / time.Duration(len(ds)),
		P50:   Percentile(ds, 50),
		P95:   Percentile(ds, 95),
		P99:   Percentile(ds, 99),
		Max:   ds[len(ds)-1],
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value that at least p percent of the
// values are less than or equal to. It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// rank = ceil(p/100 * n), computed in integers where possible so that
	// e.g. p=50, n=10 gives exactly 5.
	rank := int(p * float64(n) / 100)
	if float64(rank)*100 < p*float64(n) {
		rank++
	}
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Sent is one event the load generator published.
type Sent struct {
	ID       string    // the event's id
	At       time.Time // when the Publish call carrying it started
	Accepted bool      // Herald answered ACCEPTED with at least one delivery
	Sink     int       // the sink it is for (0 with one sink)
}

// Delivery is how the published events fared at the sink.
type Delivery struct {
	// Expected is how many events were accepted and so should arrive.
	Expected int `json:"expected"`
	// Delivered is how many of them the sink accepted at least once.
	Delivered int `json:"delivered"`
	// Lost is how many of them never arrived (Expected - Delivered).
	Lost int `json:"lost"`
	// Duplicates counts the sink's accepted requests beyond the first for
	// an event.
	Duplicates int `json:"duplicates"`
	// Unexpected counts events the sink accepted that were not accepted
	// by Publish (e.g. published by a call that failed).
	Unexpected int `json:"unexpected"`
	// Latency is from the start of the Publish call to the first accepted
	// request at the sink, over the delivered events.
	Latency Latency `json:"latency"`
	// FirstAttempt and Retried split Latency: events accepted on their
	// first attempt, and events whose first attempt the sink failed on
	// purpose.
	FirstAttempt Latency `json:"first_attempt_latency"`
	Retried      Latency `json:"retried_latency"`
	// First and Last are when the sink accepted the first and last of
	// the delivered events.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Account matches what was sent with what the sink accepted (receipts by
// event id). Receipts whose id is not among sent (warm-up events, other
// publishers) are ignored.
func Account(sent []Sent, receipts map[string]Receipt) Delivery {
	var d Delivery
	lat := make([]time.Duration, 0, len(sent))
	var first, retried []time.Duration
	for _, s := range sent {
		r, ok := receipts[s.ID]
		if !s.Accepted {
			if ok {
				d.Unexpected++
				d.Duplicates += r.Count - 1
			}
			continue
		}
		d.Expected++
		if !ok || r.Count == 0 {
			d.Lost++
			continue
		}
		d.Delivered++
		d.Duplicates += r.Count - 1
		l := r.First.Sub(s.At)
		lat = append(lat, l)
		if r.Retried {
			retried = append(retried, l)
		} else {
			first = append(first, l)
		}
		if d.First.IsZero() || r.First.Before(d.First) {
			d.First = r.First
		}
		if r.First.After(d.Last) {
			d.Last = r.First
		}
	}
	d.Latency = Summarize(lat)
	d.FirstAttempt = Summarize(first)
	d.Retried = Summarize(retried)
	return d
}

// perSecond returns n per second of d, or 0 when d is not positive.
func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
