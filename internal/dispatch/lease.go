package dispatch

import (
	"context"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/store"
)

// claims are the deliveries this node holds in memory: claimed or taken
// from the publisher, waiting for their turn, being sent, or failed and
// waiting for their workflow. Their leases in the store are short
// (Config.LeaseRenew) and renewed together while the node holds them, so
// a node that dies holds its deliveries that long at most; how long the
// node may keep one in all is Config.Lease from its claim.
type claims struct {
	mu   sync.Mutex
	held map[string]*claim
}

// claim is one delivery this node holds.
type claim struct {
	until time.Time // its lease in the store, as claimed or last renewed
	keep  time.Time // the end of the node's hold: Config.Lease after the claim
	lost  bool      // a renewal found it no longer this node's
}

// end is when the node's hold on c ends: the end of its stored lease or
// of Config.Lease, whichever comes first; a lost claim has ended.
func (c *claim) end() time.Time {
	if c.lost {
		return time.Time{}
	}
	if c.keep.Before(c.until) {
		return c.keep
	}
	return c.until
}

func newClaims() *claims {
	return &claims{held: map[string]*claim{}}
}

// add holds ds, claimed at now, until Lease after now. A delivery without
// a lease (never stored claimed) is not held: it has no deadline.
func (cs *claims) add(ds []*store.Delivery, now time.Time, lease time.Duration) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, dl := range ds {
		if !dl.LeaseUntil.IsZero() {
			cs.held[dl.ID] = &claim{until: dl.LeaseUntil, keep: now.Add(lease)}
		}
	}
}

// drop stops holding the delivery id: its result is on its way to the
// store.
func (cs *claims) drop(id string) {
	cs.mu.Lock()
	delete(cs.held, id)
	cs.mu.Unlock()
}

// keepUntil is the end of the node's hold on the first of ds to end it,
// or zero if none is held.
func (cs *claims) keepUntil(ds []*store.Delivery) time.Time {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var end time.Time
	for _, dl := range ds {
		if c, ok := cs.held[dl.ID]; ok && (end.IsZero() || c.keep.Before(end)) {
			end = c.keep
		}
	}
	return end
}

// end is when the node's hold on the first of ds to end it ends (see
// claim.end), or zero if none has a lease; ok is false if one was lost,
// or has a lease but is not held (let go of at the end of the hold).
func (cs *claims) end(ds []*store.Delivery) (end time.Time, ok bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, dl := range ds {
		c, held := cs.held[dl.ID]
		if !held {
			if !dl.LeaseUntil.IsZero() {
				return time.Time{}, false
			}
			continue
		}
		if c.lost {
			return time.Time{}, false
		}
		if e := c.end(); end.IsZero() || e.Before(end) {
			end = e
		}
	}
	return end, true
}

// holds reports whether the node still holds every delivery of ds it
// claimed, each until by at least.
func (cs *claims) holds(ds []*store.Delivery, by time.Time) bool {
	end, ok := cs.end(ds)
	return ok && (end.IsZero() || !end.Before(by))
}

// endsBefore reports whether the node's hold on dl ends before by.
func (cs *claims) endsBefore(dl *store.Delivery, by time.Time) bool {
	end, ok := cs.end([]*store.Delivery{dl})
	return !ok || (!end.IsZero() && end.Before(by))
}

// snapshot returns the deliveries held at now, and their claims, for a
// renewal. A claim past the end of the node's hold (keep) is let go of:
// by then its request has ended and its result is written or on its way
// (a request starts a request timeout and a margin before keep, a
// hand-off ends before it), so nothing renews a claim for longer than
// Config.Lease, whatever happens to it.
func (cs *claims) snapshot(now time.Time) ([]string, []*claim) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ids := make([]string, 0, len(cs.held))
	cls := make([]*claim, 0, len(cs.held))
	for id, c := range cs.held {
		switch {
		case !c.keep.After(now):
			delete(cs.held, id)
		case !c.lost:
			ids = append(ids, id)
			cls = append(cls, c)
		}
	}
	return ids, cls
}

// renewed applies a renewal of ids (with claims cls, from snapshot) to
// until, which the store made for those in renewed; the others are not
// the node's any more, unless it has let go of them since. It returns
// how many were lost.
func (cs *claims) renewed(ids []string, cls []*claim, renewed []string, until time.Time) int {
	ok := make(map[string]bool, len(renewed))
	for _, id := range renewed {
		ok[id] = true
	}
	lost := 0
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for i, id := range ids {
		if cs.held[id] != cls[i] {
			continue // let go of, maybe claimed again, since the snapshot
		}
		if ok[id] {
			cls[i].until = until
		} else {
			cls[i].lost = true
			lost++
		}
	}
	return lost
}

// renew extends, in one statement, the leases of every delivery the node
// holds (the record loop calls it between its writes); one that is not the node's any more (its lease ran out and
// another node claimed it) is marked lost, and is put back rather than
// sent or handed off.
func (d *Dispatcher) renew(timeout time.Duration) {
	ids, cls := d.claims.snapshot(time.Now())
	if len(ids) == 0 {
		return
	}
	until := time.Now().Add(d.cfg.LeaseRenew)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	renewed, err := d.store.DeliveryRenew(ctx, store.DeliveryRenewParams{Holder: d.cfg.NodeID, IDs: ids, Until: until})
	if err != nil {
		metrics.LeaseRenewals.WithLabelValues("error").Inc()
		d.cfg.Logger.Error("renew leases", "n", len(ids), "err", err)
		return
	}
	metrics.LeaseRenewals.WithLabelValues("ok").Inc()
	if lost := d.claims.renewed(ids, cls, renewed, until); lost > 0 {
		metrics.ClaimsLost.Add(float64(lost))
		d.cfg.Logger.Warn("claims lost to other nodes", "n", lost)
	}
}

// Release puts back, for any node to claim at once, every delivery the
// store says this node (Config.NodeID) holds: those it held when it last
// stopped without putting them back (killed, or crashed). Call it as the
// node starts, before Run and before anything is published through it:
// it holds none of them in memory, so none is being sent.
func (d *Dispatcher) Release(ctx context.Context) (int, error) {
	n, err := d.store.DeliveryRelease(ctx, store.DeliveryReleaseParams{Holder: d.cfg.NodeID, NextAt: time.Now()})
	metrics.ClaimsReleased.Add(float64(n))
	return n, err
}

// NodeID is the holder this dispatcher claims as; the publisher stores
// the deliveries it claims for it (Reserve) with it.
func (d *Dispatcher) NodeID() string { return d.cfg.NodeID }
