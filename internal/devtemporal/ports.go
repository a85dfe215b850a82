package devtemporal

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// loopback is where the internal services listen.
const loopback = "127.0.0.1"

// portSet holds the ports a server will use, each reserved by an open
// listener until release.
type portSet struct {
	frontendHost string
	frontend     int
	frontendHTTP int
	history      int
	matching     int
	worker       int
	uiHost       string // empty: no UI
	ui           int

	listeners []net.Listener
}

// reservePorts checks that the frontend and UI addresses are free and picks
// free ports for everything else. The ports stay reserved until release, so
// no two of them collide.
func reservePorts(cfg Config) (*portSet, error) {
	ports := &portSet{}
	if err := ports.reserveAll(cfg); err != nil {
		ports.release()
		return nil, err
	}
	return ports, nil
}

func (ports *portSet) reserveAll(cfg Config) error {
	var err error

	frontendAddr := cfg.FrontendAddr
	if frontendAddr == "" {
		frontendAddr = net.JoinHostPort(loopback, "0")
	}
	if ports.frontendHost, ports.frontend, err = ports.reserve("frontend", frontendAddr); err != nil {
		return err
	}
	if cfg.UIAddr != "" {
		if ports.uiHost, ports.ui, err = ports.reserve("UI", cfg.UIAddr); err != nil {
			return err
		}
	}
	// The frontend's HTTP API listens on the frontend's IP.
	if _, ports.frontendHTTP, err = ports.reserve("frontend HTTP", net.JoinHostPort(ports.frontendHost, "0")); err != nil {
		return err
	}
	for _, port := range []*int{&ports.history, &ports.matching, &ports.worker} {
		if _, *port, err = ports.reserve("internal service", net.JoinHostPort(loopback, "0")); err != nil {
			return err
		}
	}
	return nil
}

// reserve listens on addr and returns its IP and actual port.
func (ports *portSet) reserve(kind, addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("temporal %s address %q: %w", kind, addr, err)
	}
	if host == "" || host == "localhost" {
		host = loopback
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("temporal %s address %q: host must be an IP address", kind, addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("temporal %s address %q: invalid port", kind, addr)
	}
	addr = net.JoinHostPort(host, portText)
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return "", 0, fmt.Errorf("temporal %s address %s is in use", kind, addr)
	}
	if err != nil {
		return "", 0, fmt.Errorf("temporal %s address %s: %w", kind, addr, err)
	}
	ports.listeners = append(ports.listeners, l)
	return host, l.Addr().(*net.TCPAddr).Port, nil
}

// release closes the reserving listeners so the server can bind the ports.
func (ports *portSet) release() {
	for _, l := range ports.listeners {
		_ = l.Close()
	}
	ports.listeners = nil
}

// frontendDialAddr is the address clients and the other services use to
// reach the frontend.
func (ports *portSet) frontendDialAddr() string {
	return net.JoinHostPort(dialHost(ports.frontendHost), strconv.Itoa(ports.frontend))
}

// loopbackAddr is the address of an internal service port.
func loopbackAddr(port int) string {
	return net.JoinHostPort(loopback, strconv.Itoa(port))
}

// dialHost turns a wildcard listen IP into a loopback IP that can be dialed.
func dialHost(ip string) string {
	parsed := net.ParseIP(ip)
	switch {
	case parsed == nil || !parsed.IsUnspecified():
		return ip
	case parsed.To4() != nil:
		return loopback
	default:
		return "::1"
	}
}
