package e2e

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// tlsProxy stands for a secured Temporal cluster: it terminates TLS,
// requiring a client certificate signed by p's CA, and forwards the bytes
// to the embedded frontend.
func tlsProxy(t *testing.T, p *pki, backend string) string {
	t.Helper()
	cert := p.leaf(t, "temporal", "temporal.test", 30)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert,
		NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c); b.Close() }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTemporal_ASecuredClusterOverMutualTLS: a node reaches Temporal
// through TLS with a client certificate, and its failure path (a retry
// workflow) works there; without the certificate, or with a namespace the
// cluster lacks, it does not start and says why.
func TestTemporal_ASecuredClusterOverMutualTLS(t *testing.T) {
	p := newPKI(t, "temporal test CA")
	p.leaf(t, "herald", "herald.worker", 31)
	addr := tlsProxy(t, p, temporalAddr)

	cfg := nodeConfig(t, tempStore(t))
	cfg.TemporalAddr = addr
	cfg.TemporalTLSCA = filepath.Join(p.dir, "ca.pem")
	cfg.TemporalTLSCert, cfg.TemporalTLSKey = filepath.Join(p.dir, "herald.pem"), filepath.Join(p.dir, "herald-key.pem")
	cfg.TemporalTLSServerName = "127.0.0.1"
	n := startNode(t, cfg)
	rcv := heraldtest.NewReceiver(t, failFirst(1, http.StatusServiceUnavailable, nil))
	createSub(t, n, rcv.URL)
	id := publish(t, n, newEvent("temporal-tls-1"))[0].GetDeliveryIds()[0]
	d := waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	if d.GetAttempts() != 2 {
		t.Errorf("%d attempts, want 2 (the second by the retry workflow)", d.GetAttempts())
	}

	logger := slog.New(slog.DiscardHandler)
	noCert := cfg
	noCert.TemporalTLSCert, noCert.TemporalTLSKey = "", ""
	if c, err := app.DialTemporal(ctx(t), noCert, logger); err == nil {
		c.Close()
		t.Error("a client without a certificate reached the secured cluster")
	}
	noNamespace := nodeConfig(t, tempStore(t))
	noNamespace.TemporalNamespace = "no-such-namespace"
	_, err := app.DialTemporal(ctx(t), noNamespace, logger)
	if err == nil || !strings.Contains(err.Error(), "temporal operator namespace create --namespace no-such-namespace") {
		t.Errorf("a missing namespace: %v, want the command that creates it", err)
	}
	if cmds := app.SearchAttributeCommands("herald"); !strings.Contains(cmds, "temporal operator search-attribute create --namespace herald --name HeraldSinkHost --type Keyword") {
		t.Errorf("search attribute commands:\n%s", cmds)
	}
}
