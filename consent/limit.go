package consent

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// guesses counts the links each address got wrong, in fixed windows: an
// address that got too many wrong in the current window is turned away
// until the next. Addresses are counted by /64 for IPv6, the block one
// subscriber usually has.
type guesses struct {
	max    int
	window time.Duration
	// most bounds the addresses counted in a window; past it, new ones
	// are not (128 bits of link cannot be guessed; the count only spares
	// the store).
	most int

	mu    sync.Mutex
	start time.Time
	wrong map[netip.Prefix]int
}

func newGuesses(max int, window time.Duration) *guesses {
	return &guesses{max: max, window: window, most: 1 << 16, wrong: map[netip.Prefix]int{}}
}

// block is the addresses a is counted with: itself for IPv4, its /64 for
// IPv6 (clientAddr gives IPv4 unmapped).
func block(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// roll starts a new window if the current one is over; mu is held.
func (g *guesses) roll(now time.Time) {
	if now.Sub(g.start) >= g.window {
		g.start, g.wrong = now, map[netip.Prefix]int{}
	}
}

// blocked returns how long a, which has used up its wrong guesses, must
// wait; 0 if it has not.
func (g *guesses) blocked(a netip.Addr, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.roll(now)
	if g.wrong[block(a)] < g.max {
		return 0
	}
	return g.start.Add(g.window).Sub(now)
}

// miss counts a wrong link from a.
func (g *guesses) miss(a netip.Addr, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.roll(now)
	if b := block(a); g.wrong[b] > 0 || len(g.wrong) < g.most {
		g.wrong[b]++
	}
}

// clientAddr is the address of whoever sent r: the connection's peer, or,
// when the peer is one of the trusted proxies, the nearest address in
// X-Forwarded-For that is not.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if !isTrusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := hopAddr(strings.TrimSpace(hops[i]))
		if !ok {
			return addr // a hop that is not an address: believe no further
		}
		if addr = a; !isTrusted(addr) {
			return addr
		}
	}
	return addr
}

// hopAddr reads an address of X-Forwarded-For, which some proxies write
// with a port ("203.0.113.9:5678", "[2001:db8::1]:443") or in brackets.
func hopAddr(hop string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(hop); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(hop, "["), "]"))
	return a.Unmap(), err == nil
}
