package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/config"
)

// runTemporal runs `herald temporal setup [flags]`: it checks that Herald
// reaches the Temporal cluster and its namespace with the node's flags,
// and registers Herald's search attributes there, or prints the commands
// that do it where Herald may not (Temporal Cloud).
func runTemporal(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "setup" {
		return usageError("usage: herald temporal setup [--temporal-addr ... --temporal-namespace ... --temporal-tls-* ... --temporal-api-key ...]")
	}
	cfg := config.Serve()
	fs := flag.NewFlagSet("herald temporal setup", flag.ContinueOnError)
	cfg.RegisterFlags(fs, false)
	if err := cfg.Parse(fs, args[1:]); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := app.DialTemporal(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := app.SetUpSearchAttributes(ctx, c, cfg.TemporalNamespace); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "Temporal at %s, namespace %s: reachable, and Herald's search attributes are registered\n", cfg.TemporalAddr, cfg.TemporalNamespace)
	return nil
}
