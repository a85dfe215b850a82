// Package inprocess runs a Herald node with an embedded Temporal server in
// this process, in a temporary directory, for `herald bench`.
//
// It is apart from package bench so that bench's tests do not link the
// Temporal server.
package inprocess

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/bench"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/devtemporal"
)

// Node is a Herald node and its embedded Temporal server.
type Node struct {
	node     *app.Node
	temporal *devtemporal.Server
	dir      string
	stopOnce sync.Once
}

var _ bench.StartFunc = Start

// Start starts Temporal (SQLite) and a Herald node on loopback ports, with
// their files in a new temporary directory, and Herald's store in that
// directory too unless opts.Store names a Postgres database. It has the
// type bench.StartFunc.
func Start(ctx context.Context, opts bench.NodeOptions) (bench.Node, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.LogLevel)); err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	logOut := opts.Log
	if logOut == nil {
		logOut = os.Stderr
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	dir, err := os.MkdirTemp("", "herald-bench-")
	if err != nil {
		return nil, err
	}
	n := &Node{dir: dir}
	cfg := config.Dev()
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.Store = opts.Store
	cfg.UIAddr = ""
	cfg.LogLevel = opts.LogLevel
	if opts.MaxInFlight > 0 {
		cfg.MaxInFlight = opts.MaxInFlight
	}
	if opts.Queue > 0 {
		cfg.Queue = opts.Queue
	}
	if opts.ClaimBatch > 0 {
		cfg.ClaimBatch = opts.ClaimBatch
	}

	n.temporal, err = devtemporal.Start(ctx, devtemporal.Config{
		DataDir:      dir,
		FrontendAddr: "127.0.0.1:0",
		Namespaces:   []string{cfg.TemporalNamespace},
		Logger:       logger.With("component", "temporal-server"),
	})
	if err != nil {
		n.Stop()
		return nil, err
	}
	cfg.TemporalAddr = n.temporal.FrontendAddr()
	cfg.EmbeddedTemporal = true
	if err := cfg.Finish(); err != nil {
		n.Stop()
		return nil, err
	}
	grpcLn, httpLn, err := app.Listen(cfg)
	if err != nil {
		n.Stop()
		return nil, err
	}
	if n.node, err = app.Start(ctx, cfg, grpcLn, httpLn, logger); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

// GRPCAddr is where the node's gRPC API listens.
func (n *Node) GRPCAddr() string { return n.node.GRPCAddr() }

// Stop stops the node, then Temporal, and removes their files. It may be
// called more than once.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		if n.node != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			n.node.Stop(ctx)
			cancel()
		}
		if n.temporal != nil {
			_ = n.temporal.Stop()
		}
		os.RemoveAll(n.dir)
	})
}
