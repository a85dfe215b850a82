package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/vault"
)

// runEncryption runs `herald encryption new-key [id]` and `herald
// encryption rotate [flags]`.
func runEncryption(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError("usage: herald encryption new-key [id] | herald encryption rotate [flags]")
	}
	switch args[0] {
	case "new-key":
		id := "k1"
		if len(args) == 2 {
			id = args[1]
		} else if len(args) > 2 {
			return usageError("usage: herald encryption new-key [id]")
		}
		key := vault.NewKey(id)
		if _, err := vault.ParseKeys([]string{key}); err != nil {
			return usageError(err.Error())
		}
		fmt.Println(key)
		return nil
	case "rotate":
		// The node's own flags name the store and the keys.
		cfg := config.Serve()
		fs := flag.NewFlagSet("herald encryption rotate", flag.ContinueOnError)
		cfg.RegisterFlags(fs, true)
		if err := cfg.Parse(fs, args[1:]); err != nil {
			return err
		}
		cfg.InsecureNoAuth = true // not serving: nothing to authenticate
		if err := cfg.Finish(); err != nil {
			return err
		}
		s, err := app.OpenSealedStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer s.Close()
		n, err := s.Reseal(ctx)
		if err != nil {
			return err
		}
		id, _, _ := strings.Cut(cfg.EncryptionKeys[0], ":")
		fmt.Fprintf(os.Stderr, "sealed %d subscriptions' secrets with key %s\n", n, id)
		return nil
	}
	return usageError("usage: herald encryption new-key [id] | herald encryption rotate [flags]")
}

// usageError is a mistake in how herald was called (exit status 2).
type usageError string

func (e usageError) Error() string { return string(e) }
