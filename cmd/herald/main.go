// Command herald is Herald's one binary: it runs a node (`dev`, with
// everything embedded; `serve`, against a Temporal cluster and a
// database), a receiver for trying it (`listen`), the load tool (`bench`),
// makes keys (`keys new`, `encryption new-key`), rotates the encryption of
// stored secrets (`encryption rotate`) and sets up a Temporal namespace
// (`temporal setup`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/bench"
	"github.com/heraldhq/herald/internal/bench/inprocess"
	"github.com/heraldhq/herald/internal/cli"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/devtemporal"
)

const usage = `Herald delivers CloudEvents as signed webhooks.

Run it:
  herald dev   [flags]   run everything in one process (embedded Temporal and SQLite)
  herald serve [flags]   run a node against a Temporal cluster and a database
  herald bench [flags]   measure Herald end to end (in this process, or --target)
  herald listen [flags]  run a webhook receiver that prints what it gets

Operate a running Herald (over gRPC: --addr or HERALD_ADDR, --api-key or
HERALD_API_KEY, --tls...; -o table|json|yaml; exit 3 when not found):
  herald subscriptions list|get|create|delete|enable|disable|validate|rotate-secret
  herald deliveries list|get|attempts|redrive|resend
  herald replay --subscription ID --since 1h   send a window's deliveries again
  herald dead-letters list|redrive
  herald endpoints health  every subscription's endpoint health, worst first
  herald events list|get|erase
  herald keys create|list|delete, and keys new (print a new key made here)
  herald publish --id ID --source S --type T [--data D] | -f events.json
  herald completion bash  print a bash completion script

Set up and run:
  herald encryption new-key [id]   print a new encryption key (for --encryption-key)
  herald encryption rotate [flags] seal every stored secret with the first encryption key
  herald temporal setup [flags]    check the Temporal cluster and register Herald's search attributes
  herald config check [--dev] [flags]  validate the settings (file, environment, flags) and print them
  herald migrate status|up --store postgres://...  show or apply the PostgreSQL schema's migrations

Run "herald <command> -h" for the flags. Every flag can also be set with an
environment variable (--grpc-addr is HERALD_GRPC_ADDR) or in a YAML file
given with --config (or HERALD_CONFIG), keyed by flag name; flags win over
the environment, the environment over the file.
`

func main() {
	tuneGC()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if slices.Contains(cli.Nouns, os.Args[1]) {
		code := cli.Run(ctx, os.Args[1], os.Args[2:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
		stop()
		os.Exit(code)
	}
	var err error
	switch os.Args[1] {
	case "dev":
		err = run(ctx, os.Args[2:], true)
	case "serve":
		err = run(ctx, os.Args[2:], false)
	case "listen":
		err = listen(ctx, os.Args[2:])
	case "bench":
		err = runBench(ctx, os.Args[2:])
	case "encryption":
		err = runEncryption(ctx, os.Args[2:])
	case "temporal":
		err = runTemporal(ctx, os.Args[2:])
	case "config":
		err = runConfig(os.Args[2:])
	case "migrate":
		err = runMigrate(ctx, os.Args[2:])
	case "completion":
		err = runCompletion(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "herald: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	var uerr usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &uerr):
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, dev bool) error {
	name, cfg := "serve", config.Serve()
	if dev {
		name, cfg = "dev", config.Dev()
	}
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	cfg.RegisterFlags(fs, dev)
	fs.Usage = func() { printFlags(os.Stderr, "herald "+name+" [flags]", fs) }
	if err := cfg.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Finish(); err != nil {
		return err
	}
	logger := newLogger(cfg.LogLevel, cfg.LogFormat)
	if cfg.Tracing {
		shutdown, err := setupTracing(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = shutdown(context.Background()) }()
	}

	// Take Herald's ports first, so a port in use stops us before anything
	// starts.
	grpcLn, httpLn, err := app.Listen(cfg)
	if err != nil {
		return err
	}
	var temporal *devtemporal.Server
	if dev {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			grpcLn.Close()
			httpLn.Close()
			return fmt.Errorf("create data dir: %w", err)
		}
		temporal, err = devtemporal.Start(ctx, devtemporal.Config{
			DataDir:      cfg.DataDir,
			FrontendAddr: cfg.TemporalAddr,
			UIAddr:       cfg.UIAddr,
			Namespaces:   []string{cfg.TemporalNamespace},
			Logger:       logger.With("component", "temporal-server"),
		})
		if err != nil {
			grpcLn.Close()
			httpLn.Close()
			return err
		}
		defer temporal.Stop()
		cfg.TemporalAddr = temporal.FrontendAddr()
		cfg.EmbeddedTemporal = true
	}

	node, err := app.Start(ctx, cfg, grpcLn, httpLn, logger)
	if err != nil {
		return err
	}
	if dev {
		abs, _ := filepath.Abs(cfg.DataDir)
		access := "open: no API key needed (--admin-key requires keys)"
		if cfg.Authenticates() {
			access = "API keys required (authorization: Bearer hk_...)"
		}
		fmt.Fprintf(os.Stderr, "\nHerald dev is running (Ctrl-C stops it)\n"+
			"  gRPC API         %s   (grpcurl -plaintext %s list)\n"+
			"  HTTP edge        http://%s/healthz\n"+
			"  access           %s\n"+
			"  Temporal         %s   namespace %s\n"+
			"  Temporal Web UI  %s\n"+
			"  data             %s\n\n",
			node.GRPCAddr(), node.GRPCAddr(), node.HTTPAddr(), access, cfg.TemporalAddr, cfg.TemporalNamespace,
			orDisabled(temporal.UIURL()), abs)
	}
	// SIGHUP reads the TLS certificate and key again.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := node.ReloadCertificates(); err != nil {
				logger.Error("reload TLS files", "err", err)
			} else {
				logger.Info("TLS files reloaded")
			}
		}
	}()
	<-ctx.Done()
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	node.Stop(sctx)
	return nil
}

// runBench runs `herald bench`: see package bench.
func runBench(ctx context.Context, args []string) error {
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("herald bench", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	cfg.Start = inprocess.Start
	cfg.Progress = os.Stderr
	return bench.Run(ctx, cfg, os.Stdout)
}

// tuneGC trades memory for CPU unless GOGC or GOMEMLIMIT say otherwise:
// Herald allocates at a high rate but keeps little, so collecting less
// often saves CPU (measured: docs/benchmarks.md), and a soft memory limit
// keeps the heap bounded.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(400)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(384 << 20)
	}
}

func orDisabled(s string) string {
	if s == "" {
		return "(disabled)"
	}
	return s
}

func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// printFlags prints a command's flags as the documentation writes them
// (--name), with the environment variable each one also reads.
func printFlags(w io.Writer, usage string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\nFlags (each also read from HERALD_<NAME>, and from a --config file):\n", usage)
	fs.VisitAll(func(f *flag.Flag) {
		name, help := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n      %s", line, help)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, " [%s]\n", config.EnvName(f.Name))
	})
}
