// Package egress decides which addresses Herald may connect to for a sink:
// never loopback, private, link-local, cloud-metadata, carrier-grade NAT,
// multicast, reserved or documentation addresses, in any spelling, unless
// an operator allows them. The check sits where it cannot be bypassed, on
// the address actually dialed (Guard.Control, for net.Dialer.Control), so
// that DNS rebinding and names with several answers do not get past it;
// CheckSink refuses such sinks when a subscription is created too.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrForbidden is returned (wrapped, with the reason) for an address that
// Herald may not connect to.
var ErrForbidden = errors.New("egress: address not allowed")

// class is one range of addresses that are not public, and why.
type class struct {
	prefix netip.Prefix
	why    string
}

func p(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// forbidden is every range Herald refuses, most specific first. IPv4
// addresses inside IPv6 ones (mapped, NAT64, 6to4) are unwrapped and
// checked as IPv4 (see embedded).
var forbidden = []class{
	{p("169.254.169.254/32"), "cloud metadata"},
	{p("100.100.100.200/32"), "cloud metadata (Alibaba)"},
	{p("fd00:ec2::254/128"), "cloud metadata (AWS, IPv6)"},
	{p("0.0.0.0/8"), "unspecified or \"this network\""},
	{p("10.0.0.0/8"), "private (RFC 1918)"},
	{p("100.64.0.0/10"), "carrier-grade NAT (RFC 6598)"},
	{p("127.0.0.0/8"), "loopback"},
	{p("169.254.0.0/16"), "link-local"},
	{p("172.16.0.0/12"), "private (RFC 1918)"},
	{p("192.0.0.0/24"), "IETF protocol assignments"},
	{p("192.0.2.0/24"), "documentation"},
	{p("192.168.0.0/16"), "private (RFC 1918)"},
	{p("198.18.0.0/15"), "benchmarking"},
	{p("198.51.100.0/24"), "documentation"},
	{p("203.0.113.0/24"), "documentation"},
	{p("224.0.0.0/4"), "multicast"},
	{p("240.0.0.0/4"), "reserved (and broadcast)"},
	{p("::/128"), "unspecified"},
	{p("::1/128"), "loopback"},
	{p("fc00::/7"), "private (unique local)"},
	{p("fe80::/10"), "link-local"},
	{p("ff00::/8"), "multicast"},
	{p("2001:db8::/32"), "documentation"},
	{p("100::/64"), "discard-only"},
}

// embedded returns the IPv4 address inside an IPv6 one that carries one
// (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96 and 64:ff9b:1::/48,
// 6to4 2002::/16), or a itself.
func embedded(a netip.Addr) netip.Addr {
	if a.Is4In6() {
		return a.Unmap()
	}
	if !a.Is6() {
		return a
	}
	b := a.As16()
	switch {
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && isZero(b[4:12]): // 64:ff9b::/96
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1: // 64:ff9b:1::/48
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	case b[0] == 0x20 && b[1] == 0x02: // 6to4
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
	}
	return a
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Classify says why a is not a public address, or "" if it is one.
func Classify(a netip.Addr) string {
	a = a.WithZone("")
	for _, x := range []netip.Addr{a, embedded(a)} {
		for _, c := range forbidden {
			if c.prefix.Contains(x) {
				if x != a {
					return c.why + " (inside an IPv6 address)"
				}
				return c.why
			}
		}
	}
	return ""
}

// Guard is an egress policy. The zero value refuses every non-public
// address.
type Guard struct {
	// AllowPrivate turns the guard off (development: sinks on this
	// machine).
	AllowPrivate bool
	// Allow lists ranges allowed despite the rules (e.g. an internal
	// sink network).
	Allow []netip.Prefix
}

// CheckAddr returns nil if Herald may connect to a, or an error wrapping
// ErrForbidden that says why not.
func (g *Guard) CheckAddr(a netip.Addr) error {
	if g == nil || g.AllowPrivate {
		return nil
	}
	for _, pr := range g.Allow {
		if pr.Contains(a.Unmap()) || pr.Contains(a) {
			return nil
		}
	}
	if why := Classify(a); why != "" {
		return fmt.Errorf("%w: %s is %s", ErrForbidden, a, why)
	}
	return nil
}

// Control is a net.Dialer Control hook: it refuses a connection to an
// address the guard forbids. It sees the resolved address of every
// connection attempt, so no name, answer order or rebinding gets past it.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read address %q", ErrForbidden, address)
	}
	return g.CheckAddr(ap.Addr())
}

// Dialer returns a dialer with the guard in its Control hook.
func (g *Guard) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.Control}
}

// Resolver looks up a host's addresses (net.DefaultResolver does).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckSink refuses a sink URL whose host is a forbidden address in any
// spelling (including the decimal, octal, hexadecimal and short forms
// that some resolvers read as IPv4), or a name whose every address is
// forbidden. A name that does not resolve now passes: the dial-time check
// still applies to whatever it resolves to later.
func (g *Guard) CheckSink(ctx context.Context, sink string, r Resolver) error {
	if g == nil || g.AllowPrivate {
		return nil
	}
	u, err := url.Parse(sink)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if a, ok := ParseHost(host); ok {
		return g.CheckAddr(a)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil
	}
	var first error
	for _, a := range addrs {
		err := g.CheckAddr(a)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return fmt.Errorf("%s resolves only to addresses Herald may not connect to: %w", host, first)
}

// ParseHost reads host as an IP address if it is one in any spelling: an
// IPv6 literal (brackets already removed, a zone allowed), dotted IPv4,
// or the inet_aton forms some resolvers accept: one to four parts, each
// decimal, octal (leading 0) or hexadecimal (0x), the last filling the
// remaining bytes (2130706433, 0177.0.0.1, 0x7f.1, 127.1).
func ParseHost(host string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, true
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, part := range parts {
		v, ok := parseInetPart(part)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var out uint64
	last := len(vals) - 1
	for i, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		out |= v << (8 * (3 - i))
	}
	rest := uint(8 * (4 - last))
	if rest < 64 && vals[last] >= 1<<rest {
		return netip.Addr{}, false
	}
	out |= vals[last]
	return netip.AddrFrom4([4]byte{byte(out >> 24), byte(out >> 16), byte(out >> 8), byte(out)}), true
}

// parseInetPart reads one part of an inet_aton address.
func parseInetPart(s string) (uint64, bool) {
	base := 10
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	if s == "" || len(s) > 32 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, base, 64)
	if err != nil || v > 0xffffffff {
		return 0, false
	}
	return v, true
}
