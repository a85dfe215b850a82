package app

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/vault"
)

func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Dev()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.TemporalAddr = "127.0.0.1:1" // never reached by these tests
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// closedAtOnce reports whether a connection to addr is closed by the
// server before it sends anything.
func closedAtOnce(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

func TestListen_ClosesConnectionsFromOutsideTheAllowList(t *testing.T) {
	for _, tt := range []struct {
		allow  []string
		closed bool
	}{
		{nil, false},
		{[]string{"127.0.0.0/8"}, false},
		{[]string{"10.0.0.0/8", "::1/128"}, true},
	} {
		cfg := testConfig(t)
		cfg.AllowClientCIDRs = tt.allow
		grpcLn, httpLn, err := Listen(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, ln := range []net.Listener{grpcLn, httpLn} {
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					defer c.Close() // held open until the listener closes
				}
			}()
			if got := closedAtOnce(t, ln.Addr().String()); got != tt.closed {
				t.Errorf("allow %v: closed at once = %v, want %v", tt.allow, got, tt.closed)
			}
			ln.Close()
		}
	}
}

func TestEncryptionKeys_DevMakesOneKeyAndKeepsIt(t *testing.T) {
	cfg := testConfig(t)
	first, err := encryptionKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(cfg.DataDir, devKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the dev key file: %v, %v; want mode 0600", fi, err)
	}
	second, err := encryptionKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sealed := first.Seal("secret", "aad")
	if got, _, err := second.Open(sealed, "aad"); err != nil || got != "secret" {
		t.Errorf("a second start's key does not open the first's: %v", err)
	}
	cfg.Dev = false
	if _, err := encryptionKeys(cfg); err == nil {
		t.Error("serve without an encryption key found one")
	}
}

func TestStart_AWrongEncryptionKeyStopsTheStartAndNamesTheKey(t *testing.T) {
	cfg := testConfig(t)
	cfg.EncryptionKeys = []string{vault.NewKey("k1")}
	s, err := OpenSealedStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.SubscriptionInsert(context.Background(), &store.Subscription{ID: "sub_1", Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
		State: store.SubscriptionActive, Secrets: []store.Secret{{Key: "whsec_c2VjcmV0"}}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cfg.EncryptionKeys = []string{vault.NewKey("k2")}
	grpcLn, httpLn, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), cfg, grpcLn, httpLn, slog.New(slog.DiscardHandler))
	if !errors.Is(err, vault.ErrWrongKey) || !strings.Contains(err.Error(), "k1") {
		t.Errorf("Start with the wrong key: %v, want ErrWrongKey naming k1", err)
	}
}

func TestTemporalOptions_TLSAndAPIKey(t *testing.T) {
	cfg := testConfig(t)
	cfg.TemporalAddr = "herald.tmprl.cloud:7233"
	opts, err := TemporalOptions(cfg, slog.New(slog.DiscardHandler))
	if err != nil || opts.ConnectionOptions.TLS != nil || opts.Credentials != nil {
		t.Fatalf("plain: %+v, %v; want no TLS and no credentials", opts.ConnectionOptions, err)
	}
	cfg.TemporalAPIKey = "cloud-api-key"
	opts, err = TemporalOptions(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if tc := opts.ConnectionOptions.TLS; tc == nil || tc.ServerName != "herald.tmprl.cloud" || tc.MinVersion < tls.VersionTLS12 {
		t.Errorf("an API key implies TLS to the address's host: %+v", tc)
	}
	if opts.Credentials == nil {
		t.Error("the API key is not sent")
	}
	cfg.TemporalTLSCert = filepath.Join(t.TempDir(), "missing.pem")
	cfg.TemporalTLSKey = cfg.TemporalTLSCert
	if _, err := TemporalOptions(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "temporal-tls-cert") {
		t.Errorf("a missing client certificate: %v", err)
	}
}
