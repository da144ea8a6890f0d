package redisstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
)

// TestLimiterSpacesSends: N sends at a limit of L per second, taken by
// three "workers" at once, take at least (N-1)/L seconds, and never more
// than one in any 1/L window.
func TestLimiterSpacesSends(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	const n, rate = 30, 20.0
	// Three limiters on one Redis stand for three worker processes.
	limiters := make([]*redisstore.Limiter, 3)
	for i := range limiters {
		limiters[i] = redisstore.NewLimiter(rdb, map[aftercare.Channel]float64{aftercare.SMS: rate})
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		times []time.Time
	)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			if err := limiters[i%3].Wait(context.Background(), aftercare.SMS); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if min := time.Duration(float64(n-1) / rate * float64(time.Second)); elapsed < min {
		t.Errorf("%d sends at %g/s took %s, want at least %s", n, rate, elapsed, min)
	}
	t.Logf("%d sends at %g/s across 3 limiters took %s", n, rate, elapsed)

	// Email has no limit here.
	for range 50 {
		if err := limiters[0].Wait(context.Background(), aftercare.Email); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLimiterTooFarBehind(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	l := redisstore.NewLimiter(rdb, map[aftercare.Channel]float64{aftercare.SMS: 1})
	l.MaxWait = 1500 * time.Millisecond
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		limited int
	)
	for range 4 { // at once: the slots are at 0 s, 1 s, 2 s, 3 s
		wg.Go(func() {
			err := l.Wait(context.Background(), aftercare.SMS)
			if errors.Is(err, aftercare.ErrRateLimited) {
				mu.Lock()
				limited++
				mu.Unlock()
			} else if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Slots at 0 s and 1 s are taken; the others would wait 2 s or more.
	if limited != 2 {
		t.Errorf("%d of 4 sends were told to come back later, want 2", limited)
	}
}
