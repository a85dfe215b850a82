package dispatch

import (
	"sync"
	"time"
)

// handoffQueue holds failed first attempts waiting for their workflow to
// start, first come first served, bounded. A delivery in it is still in
// flight under its lease, which the node renews while it holds the
// delivery (up to Config.Lease after its claim): one whose hold would end
// before it could be handed off is taken out (expire) and put back in the
// store, so that it never waits here while another node claims and sends
// it again.
type handoffQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []failure
	max    int
	closed bool
}

func newHandoffQueue(max int) *handoffQueue {
	q := &handoffQueue{max: max}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push adds f, unless the queue is full or closed.
func (q *handoffQueue) push(f failure) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.items) >= q.max {
		return false
	}
	q.items = append(q.items, f)
	q.cond.Signal()
	return true
}

// pop takes the oldest failure, waiting for one; it reports false once
// the queue is closed and empty.
func (q *handoffQueue) pop() (failure, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return failure{}, false
	}
	f := q.items[0]
	q.items[0] = failure{}
	q.items = q.items[1:]
	return f, true
}

// expire takes out and returns the failures that have ended.
func (q *handoffQueue) expire(ended func(failure) bool) []failure {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []failure
	kept := q.items[:0]
	for _, f := range q.items {
		if ended(f) {
			out = append(out, f)
			continue
		}
		kept = append(kept, f)
	}
	clear(q.items[len(kept):])
	q.items = kept
	return out
}

// close makes pop report false once the queue is empty, and push refuse.
func (q *handoffQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// handoffMargin is the least time left of a delivery's lease for its
// hand-off to start: the workflow's start and the record of the hand-off
// must both come before the lease ends. A failure in the hand-off queue
// with less left is put back instead (Deferred).
const handoffMargin = 10 * time.Second

// expireEvery is how often the hand-off queue is swept for leases that
// are ending.
const expireEvery = time.Second
