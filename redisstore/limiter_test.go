package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
)

// TestLimiterSpacesSends: N sends at a limit of L per second, reserved by
// three "workers" at once: the i-th slot comes no sooner than i/L seconds
// after the start. (A slot is the time its reservation returned plus the
// wait it was given, at or after the slot Redis reserved: a loaded machine
// can only make slots read later, never sooner.)
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
			wait, err := limiters[i%3].Reserve(context.Background(), aftercare.SMS)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			times = append(times, time.Now().Add(wait))
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(times) != n {
		t.Fatalf("%d of %d sends went", len(times), n)
	}
	slices.SortFunc(times, time.Time.Compare)
	for i, at := range times {
		slot := time.Duration(float64(i) / rate * float64(time.Second))
		if got := at.Sub(start); got < slot-5*time.Millisecond {
			t.Errorf("slot %d comes %s after the start, sooner than %s", i, got, slot)
		}
	}
	t.Logf("%d sends at %g/s across 3 limiters: the last slot %s after the start", n, rate, times[n-1].Sub(start))

	// Email has no limit here.
	for range 50 {
		if wait, err := limiters[0].Reserve(context.Background(), aftercare.Email); err != nil || wait != 0 {
			t.Fatalf("Reserve(email) = %s, %v; want no wait", wait, err)
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
			_, err := l.Reserve(context.Background(), aftercare.SMS)
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
