package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

// TestChangesInParallel makes 50 changes to one booking at once
// (reschedules, treatment reports, and a cancel among them) on a real
// Redis: afterwards the tasks waiting in Redis are exactly the messages the
// record has scheduled, at its version. Overlapping changes used to leave
// the tasks of superseded versions behind.
func TestChangesInParallel(t *testing.T) {
	t.Parallel()
	client, store, rdb := onRedis(t)
	ctx := context.Background()
	base := time.Now().Add(72 * time.Hour).Truncate(time.Minute)
	booking := func(at time.Time) aftercare.Booking { return visit("bk_par", at) }
	if _, _, err := client.Book(ctx, booking(base)); err != nil {
		t.Fatal(err)
	}

	for round := range 3 { // the last round ends with the booking cancelled
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				var err error
				switch {
				case round == 2 && i == 37:
					_, err = client.Cancel(ctx, "bk_par", true)
				case i%7 == 3:
					_, err = client.Treated(ctx, "bk_par", time.Now().Add(-time.Duration(i)*time.Minute))
				default:
					_, _, err = client.Reschedule(ctx, booking(base.Add(time.Duration(round*50+i)*time.Hour)))
				}
				if code := aftercare.ErrorCode(err); err != nil && code != aftercare.ECONFLICT && code != aftercare.EINVALID {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		rec, err := store.Get(ctx, "bk_par")
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range rec.Messages {
			if m.Status == aftercare.StatusScheduled {
				want = append(want, m.Ref(rec.ID, rec.Version).TaskID())
			}
		}
		got := waitingTasks(t, asynq.NewInspectorFromRedisClient(rdb))
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d, version %d: tasks in Redis\n%s\nscheduled messages\n%s", round, rec.Version,
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		t.Logf("round %d: version %d, %d tasks, as many as the scheduled messages", round, rec.Version, len(got))
	}
}

// onRedis returns a Client on a Redis of the test's own, with the built-in
// protocols and a clinic without quiet hours, and its store and Redis.
func onRedis(t *testing.T) (*scheduler.Client, *redisstore.Store, *redis.Client) {
	t.Helper()
	rdb := redistest.Client(t)
	store := redisstore.New(rdb)
	client := scheduler.New(store, taskqueue.New(rdb), scheduler.Config{Protocols: fixture.Protocols(t), Clinic: fixture.AnyHour(t)})
	return client, store, rdb
}

// visit is booking id, botox at at, of a patient in New York on both
// channels.
func visit(id string, at time.Time) aftercare.Booking {
	return aftercare.Booking{ID: id, Treatment: "botox", AppointmentAt: at, DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com",
			Timezone: "America/New_York", SMSOptIn: true, EmailOptIn: true}}
}

// waitingTasks lists the ids of the tasks waiting in the send queues.
func waitingTasks(t *testing.T, insp *asynq.Inspector) []string {
	t.Helper()
	var ids []string
	for _, q := range aftercare.SendQueues() {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListScheduledTasks, insp.ListPendingTasks} {
			tasks, err := list(q, asynq.PageSize(10000))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(fmt.Errorf("list %s: %w", q, err))
			}
			for _, task := range tasks {
				ids = append(ids, task.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids
}
