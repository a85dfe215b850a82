// Package retention prunes what Herald no longer needs to keep: deliveries
// that ended long enough ago, their attempts, and the events left without
// deliveries, in small batches off the publish path, one node at a time.
package retention

import (
	"context"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/store"
)

// Store is what the pruner uses.
type Store interface {
	Prune(ctx context.Context, p store.PruneParams) (store.PruneResult, error)
	LeaseAcquire(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
}

// Config says what is kept, and how pruning is paced. Zero durations keep
// forever; other zero fields take package config's defaults.
type Config struct {
	// Delivered and Dead are how long a delivery is kept after it was
	// delivered or dead-lettered; its event goes with its last delivery
	// (and with it the event's dedupe record). A delivery held for a
	// suspended or disabled subscription is kept as long as a dead one,
	// from when it was held: both wait for an operator.
	Delivered, Dead time.Duration
	// Interval is how often a pass starts.
	Interval time.Duration
	// Batch is the most deliveries (and events) one transaction examines.
	Batch int
	// Holder names this node in the lease that lets one node at a time
	// prune.
	Holder string
	Logger *slog.Logger
}

// Pruner runs passes over the store.
type Pruner struct {
	store Store
	cfg   Config
}

// LeaseName is the lease pruning nodes take in turn.
const LeaseName = "retention"

// dutyCycle is the share of a pass's time spent in transactions: each
// batch is followed by a pause nine times as long, so that pruning a
// backlog takes little from the writes publishing makes.
const dutyCycle = 0.1

// New returns a pruner; Run runs it.
func New(s Store, cfg Config) *Pruner {
	if cfg.Interval <= 0 {
		cfg.Interval = config.DefaultPruneInterval
	}
	if cfg.Batch <= 0 {
		cfg.Batch = config.DefaultPruneBatch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pruner{store: s, cfg: cfg}
}

// Run prunes every Interval until ctx ends, when this node holds the
// lease.
func (p *Pruner) Run(ctx context.Context) {
	if p.cfg.Delivered <= 0 && p.cfg.Dead <= 0 {
		return // keep everything
	}
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if err := p.Pass(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("retention pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass makes one pass from the oldest rows to the first too recent to go,
// if this node holds (or takes) the lease; it renews the lease as it goes.
func (p *Pruner) Pass(ctx context.Context) error {
	now := time.Now()
	params := store.PruneParams{Limit: p.cfg.Batch}
	if p.cfg.Delivered > 0 {
		params.DeliveredBefore = now.Add(-p.cfg.Delivered)
	}
	if p.cfg.Dead > 0 {
		params.DeadBefore = now.Add(-p.cfg.Dead)
		params.HeldBefore = params.DeadBefore
	}
	// An event goes with its last delivery, or alone once as old as the
	// shorter retention when nothing matched it.
	params.EventsBefore = params.DeliveredBefore
	if params.EventsBefore.IsZero() || (!params.DeadBefore.IsZero() && params.DeadBefore.After(params.EventsBefore)) {
		params.EventsBefore = params.DeadBefore
	}
	for {
		held, err := p.store.LeaseAcquire(ctx, LeaseName, p.cfg.Holder, time.Now(), time.Now().Add(2*p.cfg.Interval))
		if err != nil || !held {
			return err
		}
		start := time.Now()
		res, err := p.store.Prune(ctx, params)
		if err != nil {
			return err
		}
		took := time.Since(start)
		metrics.Pruned.WithLabelValues("deliveries").Add(float64(res.Deliveries))
		metrics.Pruned.WithLabelValues("attempts").Add(float64(res.Attempts))
		metrics.Pruned.WithLabelValues("events").Add(float64(res.Events))
		if res.Done {
			metrics.RetentionPass.SetToCurrentTime()
			return nil
		}
		params.AfterDelivery, params.AfterEvent = res.AfterDelivery, res.AfterEvent
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(float64(took) * (1 - dutyCycle) / dutyCycle)):
		}
	}
}
