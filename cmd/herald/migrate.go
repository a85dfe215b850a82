package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/heraldhq/herald/internal/store/postgres"
)

// runMigrate runs `herald migrate status|up --store postgres://...`: it
// shows the PostgreSQL schema's migrations, or applies the pending ones
// (one transaction, under an advisory lock, so nodes starting meanwhile
// wait). SQLite stores are migrated by the node that opens them.
func runMigrate(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "status" && args[0] != "up") {
		return usageError("usage: herald migrate status|up --store postgres://...")
	}
	fs := flag.NewFlagSet("herald migrate "+args[0], flag.ContinueOnError)
	dsn := fs.String("store", os.Getenv("HERALD_STORE"), "the PostgreSQL database (HERALD_STORE)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dsn == "" {
		return usageError("herald migrate: --store postgres://... is required")
	}
	s, err := postgres.Connect(ctx, *dsn)
	if err != nil {
		return err
	}
	defer s.Close()
	st, err := s.Schema(ctx)
	if err != nil {
		return err
	}
	if args[0] == "up" {
		if len(st.Pending) == 0 && len(st.Unknown) == 0 {
			fmt.Println("the schema is current; nothing to apply")
			return nil
		}
		if err := s.Migrate(ctx); err != nil {
			return err
		}
		for _, m := range st.Pending {
			fmt.Println("applied", m.Name)
		}
		return nil
	}
	fmt.Println("applied:", st.Applied)
	for _, m := range st.Pending {
		fmt.Println("pending:", m.Name)
	}
	if len(st.Unknown) > 0 {
		fmt.Println("unknown to this Herald (applied by a newer one):", st.Unknown)
	}
	if err := st.Err(); err != nil {
		return err
	}
	fmt.Println("the schema is current")
	return nil
}
