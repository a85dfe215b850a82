// Package certs serves Herald's TLS certificate and the client certificate
// authorities of its listeners from files, and reads them again when they
// change, without dropping a connection.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// checkEvery is how often, at most, a handshake looks at whether the
// files changed.
const checkEvery = time.Second

// Files are a listener's certificate, its key and, for mTLS, the
// authorities whose client certificates it requires. Safe for concurrent
// use.
type Files struct {
	CertFile, KeyFile string
	// ClientCAFile, if set, requires every client to present a
	// certificate signed by one of its authorities.
	ClientCAFile string
	Logger       *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	clientCAs *x509.CertPool
	stamps    []stamp
	checked   time.Time
}

// stamp is what says a file changed.
type stamp struct {
	mod  time.Time
	size int64
}

// Load reads the files; it fails when they are missing or invalid.
func (f *Files) Load() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

// Reload reads the files again now (on SIGHUP). On error the files in use
// stay in use.
func (f *Files) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

func (f *Files) load() error {
	stamps, err := f.stat()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", f.CertFile, f.KeyFile, err)
	}
	var pool *x509.CertPool
	if f.ClientCAFile != "" {
		pem, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return fmt.Errorf("TLS client CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("TLS client CA %s: no PEM certificate in it", f.ClientCAFile)
		}
	}
	f.cert, f.clientCAs, f.stamps, f.checked = &cert, pool, stamps, time.Now()
	return nil
}

func (f *Files) stat() ([]stamp, error) {
	var out []stamp
	for _, name := range []string{f.CertFile, f.KeyFile, f.ClientCAFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		out = append(out, stamp{fi.ModTime(), fi.Size()})
	}
	return out, nil
}

// current returns what to serve with, reading the files again first if
// they changed since they were read (looked at once a second at most).
func (f *Files) current() (*tls.Certificate, *x509.CertPool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.checked) >= checkEvery {
		f.checked = now
		if stamps, err := f.stat(); err == nil && !equalStamps(stamps, f.stamps) {
			if err := f.load(); err != nil && f.Logger != nil {
				f.Logger.Error("TLS files changed but cannot be read; serving the previous ones", "err", err)
			} else if f.Logger != nil {
				f.Logger.Info("TLS files read again", "cert", f.CertFile)
			}
		}
	}
	return f.cert, f.clientCAs
}

func equalStamps(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// ServerConfig returns a TLS configuration for a listener: TLS 1.2 or
// newer (Go's default suites, which are all strong), HTTP/2 and
// HTTP/1.1, and each handshake served with the files as they are now.
func (f *Files) ServerConfig() (*tls.Config, error) {
	if f.cert == nil {
		return nil, errors.New("certs: Load first")
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, cas := f.current()
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			NextProtos:   base.NextProtos,
			Certificates: []tls.Certificate{*cert},
		}
		if cas != nil {
			c.ClientCAs, c.ClientAuth = cas, tls.RequireAndVerifyClientCert
		}
		return c, nil
	}
	return base, nil
}
