package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/vault"
)

// runConfig runs `herald config check [--dev] [flags]`: it reads the
// settings as `herald serve` (or `herald dev`) would, from the file,
// the environment and the flags, validates them, and prints the
// effective settings with secrets masked.
func runConfig(args []string) error {
	if len(args) == 0 || args[0] != "check" {
		return usageError("usage: herald config check [--dev] [--config herald.yaml] [flags]")
	}
	args = args[1:]
	dev := slices.Contains(args, "--dev")
	args = slices.DeleteFunc(args, func(a string) bool { return a == "--dev" })
	name, cfg := "serve", config.Serve()
	if dev {
		name, cfg = "dev", config.Dev()
	}
	fs := flag.NewFlagSet("herald config check", flag.ContinueOnError)
	cfg.RegisterFlags(fs, dev)
	if err := cfg.Parse(fs, args); err != nil {
		return err
	}
	err := cfg.Finish()
	// What the node checks when it starts, checked now.
	if cfg.AdminKey != "" && auth.ParseKey(cfg.AdminKey) != nil {
		err = errors.Join(err, errors.New("admin-key is not an API key (hk_ and 43 base64url characters; `herald keys new` makes one)"))
	}
	if len(cfg.EncryptionKeys) > 0 {
		if _, kerr := vault.ParseKeys(cfg.EncryptionKeys); kerr != nil {
			err = errors.Join(err, kerr)
		}
	}
	if err != nil {
		return fmt.Errorf("herald %s would not start:\n%w", name, err)
	}
	fmt.Print(config.Effective(fs))
	fmt.Fprintf(os.Stderr, "herald %s: the settings are valid\n", name)
	return nil
}
