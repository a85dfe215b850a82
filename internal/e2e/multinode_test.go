package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/workflows"
)

// childNode starts a Herald node in a process of its own (runChild) with
// env, and returns it and a client of its API. Without HERALD_NODE_ID in
// env, the node gets an ID of its own.
func childNode(t *testing.T, env []string) (*exec.Cmd, *testNode) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	env = append(env, childEnv+"=1", "HERALD_GRPC_ADDR="+freeAddr(t), "HERALD_HTTP_ADDR="+freeAddr(t))
	if !slices.ContainsFunc(env, func(v string) bool { return strings.HasPrefix(v, "HERALD_NODE_ID=") }) {
		env = append(env, "HERALD_NODE_ID="+newNodeID(t))
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = testWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child did not start: %v", err)
	}
	n := &testNode{}
	n.connect(t, strings.TrimSpace(strings.TrimPrefix(line, "GRPC ")))
	return cmd, n
}

// TestMultiNode_ASIGKILLedNodeLosesNothing: two nodes on one PostgreSQL,
// with Temporal persisting to the same PostgreSQL, share 5,000 events
// published through both; one is killed with SIGKILL half-way and started
// again; every event a Publish call was told is stored is delivered (lost:
// 0), and the duplicates the kill causes are counted. The first request
// of every probe fails, so that its retry runs as a workflow on that
// Temporal server.
func TestMultiNode_ASIGKILLedNodeLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	env := []string{
		"HERALD_STORE=" + postgresStore(t),
		"HERALD_TEMPORAL_ADDR=" + postgresTemporalAddr(t),
		"HERALD_TASK_QUEUE=e2e-multinode",
		"HERALD_ALLOW_INSECURE_SINKS=true",
		"HERALD_LEASE=20s",
		"HERALD_LOG_LEVEL=error",
	}
	var mu sync.Mutex
	got := map[string]int{}     // event id -> requests answered 204
	failed := map[string]bool{} // probe id -> its first request answered 503
	// The sink holds every request until the killed node is dead, so that
	// it dies with deliveries claimed, queued and in flight: others take
	// them over when their leases end.
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	rcv := heraldtest.NewReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
		id := r.Header.Get("Ce-Id")
		probe := strings.HasPrefix(id, "mn-probe-")
		if !probe {
			<-release
		}
		mu.Lock()
		defer mu.Unlock()
		if probe && !failed[id] {
			failed[id] = true
			return http.StatusServiceUnavailable, nil
		}
		got[id]++
		return http.StatusNoContent, nil
	})
	envA := append(slices.Clip(env), "HERALD_NODE_ID=mn-a")
	a, na := childNode(t, envA)
	_, nb := childNode(t, append(slices.Clip(env), "HERALD_NODE_ID=mn-b"))
	sub := createSub(t, na, rcv.URL)
	// Node B sees the subscription made through A at its next catalog
	// reload; until then its events would match nothing.
	probe := 0
	heraldtest.Eventually(t, wait, "node B to see the subscription", func() bool {
		probe++
		return len(publish(t, nb, newEvent(fmt.Sprint("mn-probe-", probe)))[0].GetDeliveryIds()) == 1
	})

	const events, perCall = 5000, 50
	var accepted sync.Map
	var killed atomic.Bool
	publishThrough := func(n *testNode, first int) error {
		batch := make([]*cloudeventsv1.CloudEvent, perCall)
		for i := range batch {
			batch[i] = newEvent(fmt.Sprint("mn-", first+i))
		}
		resp, err := n.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: batch})
		if err != nil {
			return err
		}
		for _, r := range resp.GetResults() {
			accepted.Store(r.GetId(), true)
		}
		return nil
	}
	for call := range events / perCall {
		n := na
		if call%2 == 1 || killed.Load() {
			n = nb
		}
		if call == events/perCall/2 {
			if err := a.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = a.Wait()
			killed.Store(true)
			n = nb
		}
		if err := publishThrough(n, call*perCall); err != nil {
			t.Fatalf("publish through the live node: %v", err)
		}
	}
	_, _ = childNode(t, envA) // the killed node, started again, with its ID
	releaseOnce.Do(func() { close(release) })

	want := 0
	accepted.Range(func(any, any) bool { want++; return true })
	if want != events {
		t.Fatalf("%d events accepted, want %d (every call went to a live node)", want, events)
	}
	heraldtest.Eventually(t, 3*wait, "every accepted event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		accepted.Range(func(k, _ any) bool {
			if got[k.(string)] > 0 {
				n++
			}
			return true
		})
		return n == want
	})
	mu.Lock()
	defer mu.Unlock()
	lost, dups := 0, 0
	accepted.Range(func(k, _ any) bool {
		if got[k.(string)] == 0 {
			lost++
		}
		return true
	})
	for _, n := range got {
		dups += n - 1
	}
	t.Logf("%d events accepted, %d delivered, lost %d, duplicates %d (deliveries in flight on the killed node)", want, len(got), lost, dups)
	if lost != 0 {
		t.Errorf("lost %d accepted events", lost)
	}
	requireWorkflowsInPostgres(t, sub.GetId())
}

// requireWorkflowsInPostgres fails the test unless Temporal's executions
// table in temporalOnPostgres's database holds delivery workflows of
// subscription subID, and logs how many.
func requireWorkflowsInPostgres(t *testing.T, subID string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(c, temporalOnPostgres.url)
	if err != nil {
		t.Fatalf("connect to Temporal's database: %v", err)
	}
	defer conn.Close(c)
	var n int
	prefix := workflows.WorkflowID(subID, "")
	if err := conn.QueryRow(c, "SELECT count(*) FROM executions WHERE starts_with(workflow_id, $1)", prefix).Scan(&n); err != nil {
		t.Fatalf("count Temporal's executions: %v", err)
	}
	t.Logf("Temporal's executions table in PostgreSQL holds %d %s* workflows", n, prefix)
	if n == 0 {
		t.Errorf("no delivery workflow of subscription %s in Temporal's PostgreSQL database", subID)
	}
}

// pgProxy stands between a node and PostgreSQL; cut drops every
// connection and refuses new ones until restore, as a database restart
// does.
type pgProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns[c], p.conns[b] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(b, c); b.Close() }()
			go func() { _, _ = io.Copy(c, b); c.Close() }()
		}
	}()
	return p
}

func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *pgProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestPostgresRestart_PublishersAreToldAndNothingAcceptedIsLost: while
// PostgreSQL is away, Publish answers an error (never OK for an event it
// did not store); once it is back, every event that was accepted is
// delivered. Temporal persists to the same PostgreSQL (not through the
// proxy), and the first request fails, so that one delivery is retried by
// its workflow.
func TestPostgresRestart_PublishersAreToldAndNothingAcceptedIsLost(t *testing.T) {
	dsn := postgresStore(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newPGProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	cfg := nodeConfig(t, u.String())
	cfg.TemporalAddr = postgresTemporalAddr(t)
	n := startNode(t, cfg)
	var mu sync.Mutex
	delivered := map[string]bool{}
	rcv := heraldtest.NewReceiver(t, func(i int, r *http.Request) (int, http.Header) {
		if i == 0 {
			return http.StatusServiceUnavailable, nil
		}
		mu.Lock()
		defer mu.Unlock()
		delivered[r.Header.Get("Ce-Id")] = true
		return http.StatusNoContent, nil
	})
	sub := createSub(t, n, rcv.URL)

	var accepted []string
	refused := map[codes.Code]int{}
	for i := range 300 {
		switch i {
		case 100:
			proxy.cut()
		case 200:
			proxy.restore()
		}
		id := fmt.Sprint("pg-", i)
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := n.publish.Publish(c, &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent(id)}})
		cancel()
		if err != nil {
			refused[status.Code(err)]++
			continue
		}
		accepted = append(accepted, id)
	}
	if len(refused) == 0 {
		t.Fatal("no Publish call failed while PostgreSQL was away")
	}
	for code := range refused {
		if code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("a Publish call failed with %s, want Unavailable (or the caller's deadline)", code)
		}
	}
	t.Logf("%d accepted, refused %v", len(accepted), refused)
	heraldtest.Eventually(t, 3*wait, "every accepted event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range accepted {
			if !delivered[id] {
				return false
			}
		}
		return true
	})
	requireWorkflowsInPostgres(t, sub.GetId())
}
