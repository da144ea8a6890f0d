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

	mu    sync.Mutex
	start time.Time
	wrong map[netip.Prefix]int
}

func newGuesses(max int, window time.Duration) *guesses {
	return &guesses{max: max, window: window, wrong: map[netip.Prefix]int{}}
}

func block(a netip.Addr) netip.Prefix {
	if a.Is4() || a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), 32)
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
	g.wrong[block(a)]++
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
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr // a hop that is not an address: believe no further
		}
		if addr = a.Unmap(); !isTrusted(addr) {
			return addr
		}
	}
	return addr
}
