package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/bench"
)

// The load tool drives a running node through its public API and accounts
// for every event; the profiles and the execution trace it was asked for
// are written.
func TestBench_DrivesARunningNode(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	dir := t.TempDir()
	cfg := bench.DefaultConfig()
	cfg.Target = n.GRPCAddr()
	cfg.Events = 300
	cfg.Publishers = 4
	cfg.Batch = 10
	cfg.DrainTimeout = time.Minute
	cfg.JSON = true
	cfg.CPUProfile = filepath.Join(dir, "cpu.pprof")
	cfg.MemProfile = filepath.Join(dir, "mem.pprof")
	cfg.Trace = filepath.Join(dir, "trace.out")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := bench.Run(ctx, cfg, &out); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	var res bench.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("result is not JSON: %v\n%s", err, out.String())
	}
	p, d := res.Herald.Publish, res.Herald.Delivery
	if p.Events != 300 || p.Accepted != 300 || p.Calls != 30 || p.Errors != 0 {
		t.Errorf("publish = %d events, %d accepted in %d calls, %d errors; want 300, 300, 30, 0", p.Events, p.Accepted, p.Calls, p.Errors)
	}
	if d.Expected != 300 || d.Delivered != 300 || d.Lost != 0 || d.Duplicates != 0 || d.Unexpected != 0 {
		t.Errorf("delivery = %+v; want all 300 delivered once", d)
	}
	if res.Herald.DeliveryRate <= 0 {
		t.Errorf("delivery rate = %v, want > 0", res.Herald.DeliveryRate)
	}
	// pprof profiles are gzipped protobuf; an execution trace starts with
	// its "go 1.x trace" header.
	for _, f := range []struct{ name, prefix string }{
		{cfg.CPUProfile, "\x1f\x8b"},
		{cfg.MemProfile, "\x1f\x8b"},
		{cfg.Trace, "go 1."},
	} {
		b, err := os.ReadFile(f.name)
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.HasPrefix(b, []byte(f.prefix)) || len(b) < 100 {
			t.Errorf("%s: %d bytes starting %q, want more than 100 starting %q", filepath.Base(f.name), len(b), b[:min(len(b), 8)], f.prefix)
		}
	}
}
