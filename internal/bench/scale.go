package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/aftercare/aftercare"
)

// ScaleLevel is the latency of the HTTP API's calls with Bookings live
// bookings in Redis.
type ScaleLevel struct {
	Bookings int
	// Sample is how many calls of each kind were timed.
	Sample            int
	Book, Get, Cancel Latency
}

// Latency is the median and the 99th percentile of a sample of calls.
type Latency struct {
	P50, P99 time.Duration
}

// scaleSample is how many calls of each kind are timed at a level (fewer
// at a level with fewer bookings).
const scaleSample = 200

// probeBase is the first booking number of the bookings the scale phase
// creates and cancels; the bookings filling Redis are numbered from 0, far
// below it, so no two share an id or a phone number.
const probeBase = 5_000_000

// scale fills an empty Redis with bookings, through the Go package, up to
// each level of b.Scale in turn, smallest first, and at each times calls
// to the HTTP API one at a time: creating bookings, reading bookings spread
// over those filling Redis, then cancelling the bookings it created, so
// the next level starts from as many live bookings as this one had.
//
// A worker takes the tasks that fall due (each booking's consent, at once)
// off the queues, as the service's would, doing nothing with them: asynq
// deletes a waiting task by walking its queue's list, so a cancel's cost
// would otherwise grow with every consent nobody took.
func (b *bench) scale(ctx context.Context) ([]ScaleLevel, error) {
	if _, err := b.fresh(ctx); err != nil {
		return nil, err
	}
	queues := map[string]int{}
	for _, q := range aftercare.SendQueues() {
		queues[q] = 1
	}
	taker := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency: b.Concurrency, Queues: queues, TaskCheckInterval: 200 * time.Millisecond, LogLevel: asynq.ErrorLevel,
	})
	if err := taker.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		return nil, err
	}
	defer taker.Shutdown()
	c := b.startAPI()
	defer c.close()
	sched := b.scheduler()
	var (
		out    []ScaleLevel
		live   int
		probes = probeBase
	)
	for _, level := range slices.Compact(slices.Sorted(slices.Values(b.Scale))) {
		b.step("scale: filling Redis up to %d live bookings", level)
		from := live
		if _, err := b.parallel("booked", level-from, func(i int) error {
			_, _, err := sched.Book(ctx, b.booking(from+i))
			return err
		}); err != nil {
			return nil, fmt.Errorf("scale: fill up to %d bookings: %w", level, err)
		}
		live = level
		if err := b.waitTaken(ctx); err != nil {
			return nil, err
		}
		l, err := b.probe(ctx, c, level, probes)
		if err != nil {
			return nil, fmt.Errorf("scale: at %d bookings: %w", level, err)
		}
		probes += l.Sample
		out = append(out, l)
	}
	if _, err := b.fresh(ctx); err != nil { // give the memory back
		return nil, err
	}
	return out, nil
}

// waitTaken waits until no send task waits in a queue.
func (b *bench) waitTaken(ctx context.Context) error {
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		waiting := 0
		for _, q := range aftercare.SendQueues() {
			info, err := insp.GetQueueInfo(q)
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			waiting += info.Pending
		}
		if waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// probe times, one at a time, min(scaleSample, level) calls of each kind
// with level live bookings in Redis: booking the appointments numbered
// from first, reading bookings spread evenly over the level, and
// cancelling the bookings it made.
func (b *bench) probe(ctx context.Context, c *apiClient, level, first int) (ScaleLevel, error) {
	n := min(scaleSample, level)
	b.step("scale: timing %d bookings, reads and cancellations at %d live bookings", n, level)
	l := ScaleLevel{Bookings: level, Sample: n}
	var err error
	if l.Book, err = timeCalls(n, func(j int) error { return c.book(ctx, b.booking(first+j)) }); err != nil {
		return l, err
	}
	if l.Get, err = timeCalls(n, func(j int) error { return c.get(ctx, b.booking(j*level/n).ID) }); err != nil {
		return l, err
	}
	if l.Cancel, err = timeCalls(n, func(j int) error { return c.cancel(ctx, b.booking(first+j).ID) }); err != nil {
		return l, err
	}
	return l, nil
}

// timeCalls calls call(j) for j in [0, n), one after another, and returns
// the latency of the calls; it stops at the first error.
func timeCalls(n int, call func(j int) error) (Latency, error) {
	took := make([]time.Duration, n)
	for j := range n {
		start := time.Now()
		if err := call(j); err != nil {
			return Latency{}, err
		}
		took[j] = time.Since(start)
	}
	slices.Sort(took)
	return Latency{P50: percentile(took, 0.5), P99: percentile(took, 0.99)}, nil
}
