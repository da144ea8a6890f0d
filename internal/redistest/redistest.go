// Package redistest gives tests a Redis of their own: a private
// redis-server (see redisproc) stopped at the end of the test, or failing
// that REDIS_ADDR or an embedded miniredis.
package redistest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare/internal/redisproc"
)

// Addr returns the address of an empty Redis for the test, in order of
// preference: a private redis-server stopped at the end of the test; the
// server at REDIS_ADDR, flushed first (point it at a scratch Redis); an
// embedded miniredis. It logs which one it uses.
func Addr(tb testing.TB) string {
	tb.Helper()
	s, err := redisproc.StartServer(tb.TempDir())
	if err == nil {
		tb.Cleanup(s.Stop)
		return s.Addr
	}
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		tb.Logf("redistest: no private redis-server (%v); using REDIS_ADDR=%s, flushed", err, addr)
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		if ferr := c.FlushDB(context.Background()).Err(); ferr != nil {
			tb.Fatalf("redistest: flush REDIS_ADDR: %v", ferr)
		}
		return addr
	}
	if errors.Is(err, exec.ErrNotFound) {
		tb.Logf("redistest: redis-server is not installed and REDIS_ADDR is not set; using the embedded miniredis")
	} else {
		tb.Logf("redistest: redis-server failed (%v); using the embedded miniredis", err)
	}
	return miniredis.RunT(tb).Addr()
}

// Client returns a client of an empty Redis from Addr, closed at the end of
// the test.
func Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: Addr(tb)})
	tb.Cleanup(func() { c.Close() })
	return c
}

// RequireServer skips the test when redis-server is not installed, or
// fails it when the CI variable is set: CI must run every test.
func RequireServer(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redis-server is required in CI: %v", err)
		}
		tb.Skipf("redis-server is not installed: %v", err)
	}
}
