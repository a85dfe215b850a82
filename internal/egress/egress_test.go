package egress

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckAddr_RefusesEveryNonPublicClass(t *testing.T) {
	g := &Guard{}
	for _, tt := range []struct{ addr, why string }{
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"fd12:3456::1", "private"},
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"169.254.169.254", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata"},
		{"100.100.100.200", "cloud metadata"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"192.0.2.10", "documentation"},
		{"198.51.100.10", "documentation"},
		{"203.0.113.10", "documentation"},
		{"2001:db8::1", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"192.0.0.8", "IETF"},
		// IPv4 inside IPv6.
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"64:ff9b::10.0.0.1", "private"},
		{"64:ff9b:1::a9fe:a9fe", "cloud metadata"},
		{"2002:7f00:1::", "loopback"},
	} {
		err := g.CheckAddr(netip.MustParseAddr(tt.addr))
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("CheckAddr(%s) = %v, want forbidden as %s", tt.addr, err, tt.why)
		}
	}
	for _, public := range []string{"93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.216.34", "64:ff9b::808:808", "172.32.0.1", "100.128.0.1"} {
		if err := g.CheckAddr(netip.MustParseAddr(public)); err != nil {
			t.Errorf("CheckAddr(%s) = %v, want allowed", public, err)
		}
	}
}

func TestGuard_AllowListAndDevelopment(t *testing.T) {
	g := &Guard{Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	if err := g.CheckAddr(netip.MustParseAddr("10.20.1.1")); err != nil {
		t.Errorf("allowed range refused: %v", err)
	}
	if err := g.CheckAddr(netip.MustParseAddr("10.21.1.1")); err == nil {
		t.Error("a private address outside the allow-list passed")
	}
	if err := (&Guard{AllowPrivate: true}).CheckAddr(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("development guard refused loopback: %v", err)
	}
}

func TestParseHost_EverySpellingOfAnAddress(t *testing.T) {
	for _, tt := range []struct{ host, want string }{
		{"127.0.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0x7f.0.0.1", "127.0.0.1"},
		{"0x7F000001", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0", "0.0.0.0"},
		{"017700000001", "127.0.0.1"},
		{"169.254.43518", "169.254.169.254"},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"},
	} {
		a, ok := ParseHost(tt.host)
		if !ok || a.String() != tt.want {
			t.Errorf("ParseHost(%q) = %v, %v; want %s", tt.host, a, ok, tt.want)
		}
	}
	for _, name := range []string{"example.com", "127.0.0.1.example.com", "1.2.3.4.5", "0x", "256.0.0.1", "1.2.3.256", "4294967296", "08.0.0.1", "", "a.b"} {
		if a, ok := ParseHost(name); ok {
			t.Errorf("ParseHost(%q) = %v, want not an address", name, a)
		}
	}
}

// fakeResolver answers every name with addrs.
type fakeResolver []netip.Addr

func (f fakeResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return f, nil
}

func TestCheckSink(t *testing.T) {
	g := &Guard{}
	ctx := context.Background()
	private := fakeResolver{netip.MustParseAddr("10.0.0.5")}
	mixed := fakeResolver{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("93.184.216.34")}
	for _, tt := range []struct {
		sink string
		r    Resolver
		ok   bool
	}{
		{"https://127.0.0.1/hook", nil, false},
		{"https://2130706433/hook", nil, false},
		{"https://0x7f.1/hook", nil, false},
		{"https://[::ffff:127.0.0.1]/hook", nil, false},
		{"https://[fd00:ec2::254]/latest/meta-data", nil, false},
		{"https://169.254.169.254/latest/meta-data", nil, false},
		{"https://internal.example/hook", private, false},
		{"https://mixed.example/hook", mixed, true}, // refused at dial for the private answer
		{"https://93.184.216.34/hook", nil, true},
	} {
		err := g.CheckSink(ctx, tt.sink, tt.r)
		if (err == nil) != tt.ok {
			t.Errorf("CheckSink(%s) = %v, want ok %v", tt.sink, err, tt.ok)
		}
	}
}

func TestControl_RefusesTheDialedAddress(t *testing.T) {
	g := &Guard{}
	if err := g.Control("tcp4", "127.0.0.1:443", nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("Control(127.0.0.1) = %v", err)
	}
	if err := g.Control("tcp6", "[::ffff:10.0.0.1]:80", nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("Control(mapped 10.0.0.1) = %v", err)
	}
	if err := g.Control("tcp4", "93.184.216.34:443", nil); err != nil {
		t.Errorf("Control(public) = %v", err)
	}
}

// FuzzParseHost: whatever the host, ParseHost does not panic, and an
// address it reads as IPv4 is classified the same as its dotted form.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "::1", "example.com", "1.2.3.4.5", "0x", "00000000000000000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		a, ok := ParseHost(host)
		if !ok {
			return
		}
		if a.Is4() {
			b, err := netip.ParseAddr(a.String())
			if err != nil || b != a || Classify(a) != Classify(b) {
				t.Fatalf("ParseHost(%q) = %v: round trip %v, %v", host, a, b, err)
			}
		}
	})
}
