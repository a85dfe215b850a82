package app

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/net/netutil"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/vault"
)

// Listen opens the node's gRPC and HTTP listeners, so that a port in use is
// reported before anything starts. Each holds at most cfg.MaxConnections
// connections at once (more wait to be accepted) and, with
// cfg.AllowClientCIDRs, closes at once any from elsewhere.
func Listen(cfg config.Config) (grpcLn, httpLn net.Listener, err error) {
	allow, err := cfg.ClientAllowPrefixes()
	if err != nil {
		return nil, nil, err
	}
	grpcLn, err = listen(cfg.GRPCAddr, allow, cfg.MaxConnections)
	if err != nil {
		return nil, nil, fmt.Errorf("herald gRPC address %s is not available: %w", cfg.GRPCAddr, err)
	}
	httpLn, err = listen(cfg.HTTPAddr, allow, cfg.MaxConnections)
	if err != nil {
		grpcLn.Close()
		return nil, nil, fmt.Errorf("herald HTTP address %s is not available: %w", cfg.HTTPAddr, err)
	}
	return grpcLn, httpLn, nil
}

func listen(addr string, allow []netip.Prefix, maxConns int) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if len(allow) > 0 {
		ln = &allowListener{Listener: ln, allow: allow}
	}
	return netutil.LimitListener(ln, maxConns), nil
}

// allowListener accepts connections only from addresses in allow; others
// are closed as they arrive.
type allowListener struct {
	net.Listener
	allow []netip.Prefix
}

func (l *allowListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if allowed(c.RemoteAddr(), l.allow) {
			return c, nil
		}
		c.Close()
	}
}

func allowed(a net.Addr, allow []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// devKeyFile is where `herald dev` keeps the encryption key it made.
const devKeyFile = "encryption.key"

// encryptionKeys returns the keys that seal secrets at rest: the
// configured ones or, in dev mode, the one in the data directory (made,
// mode 0600, on first start).
func encryptionKeys(cfg config.Config) (*vault.Keys, error) {
	specs := cfg.EncryptionKeys
	if len(specs) == 0 {
		if !cfg.Dev || cfg.DataDir == "" {
			return nil, fmt.Errorf("no encryption key: set HERALD_ENCRYPTION_KEY (make one with `herald encryption new-key`)")
		}
		path := filepath.Join(cfg.DataDir, devKeyFile)
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			key := vault.NewKey("dev")
			if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("write the dev encryption key: %w", err)
			}
			b = []byte(key)
		} else if err != nil {
			return nil, fmt.Errorf("read the dev encryption key: %w", err)
		}
		specs = []string{strings.TrimSpace(string(b))}
	}
	keys, err := vault.ParseKeys(specs)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	return keys, nil
}
