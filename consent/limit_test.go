package consent

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// TestClientAddr: the peer's address, unless the peer is a trusted proxy;
// then the nearest untrusted hop of X-Forwarded-For, however the proxy
// wrote it.
func TestClientAddr(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		peer, xff string
		trusted   []netip.Prefix
		want      string
	}{
		{"203.0.113.9:4000", "198.51.100.1", nil, "203.0.113.9"},                      // no proxy trusted: the header is ignored
		{"203.0.113.9:4000", "198.51.100.1", proxies, "203.0.113.9"},                  // the peer is not a proxy
		{"10.0.0.2:4000", "198.51.100.1", proxies, "198.51.100.1"},                    // one proxy
		{"10.0.0.2:4000", "198.51.100.1, 10.0.0.7", proxies, "198.51.100.1"},          // two proxies
		{"10.0.0.2:4000", "6.6.6.6, 198.51.100.1, 10.0.0.7", proxies, "198.51.100.1"}, // the patient cannot forge past the proxies
		{"10.0.0.2:4000", "198.51.100.1:5678", proxies, "198.51.100.1"},               // with a port
		{"10.0.0.2:4000", "[2001:db8::1]:443", proxies, "2001:db8::1"},                // IPv6 with a port
		{"10.0.0.2:4000", "[2001:db8::1]", proxies, "2001:db8::1"},                    // IPv6 in brackets
		{"10.0.0.2:4000", "unknown", proxies, "10.0.0.2"},                             // not an address: the proxy
		{"[::ffff:203.0.113.9]:4000", "", nil, "203.0.113.9"},                         // IPv4 mapped into IPv6
	} {
		r := httptest.NewRequest("GET", "/consent/x", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := clientAddr(r, c.trusted); got.String() != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}

// TestGuesses: an address is turned away after max wrong links until the
// window ends; an IPv6 /64 counts as one; the count is bounded.
func TestGuesses(t *testing.T) {
	t.Parallel()
	g := newGuesses(3, time.Minute)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a, same := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff")
	for range 3 {
		if g.blocked(a, now) > 0 {
			t.Fatal("blocked too soon")
		}
		g.miss(same, now)
	}
	if wait := g.blocked(a, now.Add(10*time.Second)); wait != 50*time.Second {
		t.Errorf("blocked for %s, want the rest of the window, 50s", wait)
	}
	if g.blocked(netip.MustParseAddr("2001:db9::1"), now) > 0 {
		t.Error("another /64 is blocked")
	}
	if g.blocked(a, now.Add(time.Minute)) > 0 {
		t.Error("still blocked in the next window")
	}
	g.most = 2
	for i := range 10 {
		g.miss(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), now.Add(time.Minute))
	}
	if len(g.wrong) > 2 {
		t.Errorf("%d addresses counted, want at most 2", len(g.wrong))
	}
}
