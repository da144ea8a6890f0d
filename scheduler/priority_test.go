package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/aftercare/aftercare"
)

// TestClinicalStepsQueuedFirst: the tasks of the protocol's clinical-
// priority steps wait in the clinical queue, the others in their channel's,
// and a reschedule removes each from the queue it is in.
func TestClinicalStepsQueuedFirst(t *testing.T) {
	t.Parallel()
	client, _, rdb := onRedis(t)
	ctx := context.Background()
	at := time.Now().Add(72 * time.Hour).Truncate(time.Minute)
	b := visit("bk_prio", at)
	if _, _, err := client.Book(ctx, b); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queueOf := func(version int, step string, ch aftercare.Channel) string {
		ref := aftercare.MessageRef{BookingID: "bk_prio", Version: version, Step: step, Channel: ch}
		for _, q := range aftercare.SendQueues() {
			if _, err := insp.GetTaskInfo(q, ref.TaskID()); err == nil {
				return q
			}
		}
		return "none"
	}
	for _, c := range []struct {
		step string
		ch   aftercare.Channel
		want string
	}{
		{"upright", aftercare.SMS, aftercare.QueueClinical},
		{"lie_down", aftercare.SMS, aftercare.QueueClinical},
		{"day1", aftercare.SMS, aftercare.QueueSMS},
		{"day14", aftercare.Email, aftercare.QueueEmail},
	} {
		if got := queueOf(1, c.step, c.ch); got != c.want {
			t.Errorf("%s/%s waits in %s, want %s", c.step, c.ch, got, c.want)
		}
	}

	b.AppointmentAt = at.Add(24 * time.Hour)
	if _, _, err := client.Reschedule(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := queueOf(1, "upright", aftercare.SMS); got != "none" {
		t.Errorf("version 1's upright task is still in %s after the reschedule", got)
	}
	if got := queueOf(2, "upright", aftercare.SMS); got != aftercare.QueueClinical {
		t.Errorf("version 2's upright task waits in %s, want %s", got, aftercare.QueueClinical)
	}
}
