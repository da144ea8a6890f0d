package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// checkTasks asserts the invariant every lifecycle test ends with: the task
// ids waiting in Redis for booking id are exactly those of the messages GET
// reports as scheduled. Tasks still running are waited out first.
func (tb *testBundle) checkTasks(t *testing.T, id string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: tb.redisAddr})
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)

	var got, want []string
	deadline := time.Now().Add(time.Minute)
	for {
		var active bool
		got, active = tasksOf(t, insp, id)
		tl := tb.timeline(t, id)
		want = nil
		for _, m := range tl.Messages {
			if m.Status == string(aftercare.StatusScheduled) {
				want = append(want, fmt.Sprintf("%s:v%d:%s:%s", id, tl.Version, m.Step, m.Channel))
			}
		}
		slices.Sort(want)
		if !active && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks in Redis %v\nscheduled messages %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tasksOf lists the waiting tasks of booking id in every queue, and whether
// any of its tasks is running.
func tasksOf(t *testing.T, insp *asynq.Inspector, id string) ([]string, bool) {
	t.Helper()
	var ids []string
	active := false
	for _, q := range aftercare.SendQueues() {
		lists := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			insp.ListScheduledTasks, insp.ListPendingTasks, insp.ListRetryTasks, insp.ListActiveTasks,
		}
		for i, list := range lists {
			tasks, err := list(q, asynq.PageSize(1000))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, task := range tasks {
				if !strings.HasPrefix(task.ID, id+":") {
					continue
				}
				if i == len(lists)-1 {
					active = true
					continue
				}
				ids = append(ids, task.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids, active
}

func (tb *testBundle) mustRequest(t *testing.T, method, path string, body any, want int) timeline {
	t.Helper()
	status, data := tb.request(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, status, data, want)
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(path, "/v1/bookings/"), "/")
	id, _, _ = strings.Cut(id, "?")
	if b, ok := body.(map[string]any); ok && path == "/v1/bookings" {
		id = b["id"].(string)
	}
	return tb.timeline(t, id)
}

func (tb *testBundle) waitStatus(t *testing.T, id, step, channel, status string) {
	t.Helper()
	waitFor(t, time.Minute, func() bool {
		st, _ := tb.timeline(t, id).status(step, channel)
		return st == status
	})
}

func (tl timeline) sendAt(step, channel string) time.Time {
	for _, m := range tl.Messages {
		if m.Step == step && m.Channel == channel {
			return m.SendAt
		}
	}
	return time.Time{}
}

// waitIdle waits until no task that was due when it was called is waiting
// or running: every send due by then has run and been recorded, so what
// the providers received is final up to that moment (a message sent twice
// would show).
func (tb *testBundle) waitIdle(t *testing.T) {
	t.Helper()
	since := time.Now()
	rdb := redis.NewClient(&redis.Options{Addr: tb.redisAddr})
	defer rdb.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	waitFor(t, time.Minute, func() bool {
		for _, q := range append(aftercare.SendQueues(), aftercare.QueueAlerts) {
			lists := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
				insp.ListPendingTasks, insp.ListActiveTasks, insp.ListScheduledTasks, insp.ListRetryTasks,
			}
			for _, list := range lists {
				tasks, err := list(q, asynq.PageSize(1000))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				for _, task := range tasks {
					if task.State == asynq.TaskStatePending || task.State == asynq.TaskStateActive || !task.NextProcessAt.After(since) {
						return false
					}
				}
			}
		}
		return true
	})
}

func TestReschedule(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		delta time.Duration
	}{{"later", 24 * time.Hour}, {"earlier", -30 * time.Hour}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			appt := time.Now().Add(48 * time.Hour).Truncate(time.Second)
			tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_r", appt), 201)
			tb.waitStatus(t, "bk_r", "consent", "sms", "sent")
			tb.waitStatus(t, "bk_r", "consent", "email", "sent")

			moved := appt.Add(tt.delta)
			tl := tb.mustRequest(t, "PUT", "/v1/bookings/bk_r", bookingBody("bk_r", moved), 200)
			if tl.Version != 2 {
				t.Errorf("version = %d, want 2", tl.Version)
			}
			if got := tl.sendAt("upright", "sms"); !got.Equal(moved) {
				t.Errorf("upright at %s, want the new treatment end %s", got, moved)
			}
			reminder, _ := tl.status("reminder", "sms")
			if wantReminder := map[bool]string{true: "scheduled", false: "skipped"}[tt.delta > 0]; reminder != wantReminder {
				t.Errorf("reminder = %s, want %s", reminder, wantReminder)
			}
			// Not acknowledged yet: the consent goes again, with a new link;
			// the old one no longer opens the page.
			sms, ok := tb.twilio.Wait(2, time.Minute)
			if _, mailed := tb.smtp.Wait(2, time.Minute); !ok || !mailed {
				t.Fatal("the consent was not sent again")
			}
			old, fresh := consentLink.FindString(sms[0].Body), consentLink.FindString(sms[1].Body)
			if old == "" || old == fresh {
				t.Errorf("consent links %q then %q, want a new one", old, fresh)
			}
			if status, _ := tb.request(t, "GET", strings.TrimPrefix(old, tb.url), nil); status != 404 {
				t.Errorf("the link from before the reschedule answers %d", status)
			}
			if status, _ := tb.request(t, "GET", strings.TrimPrefix(fresh, tb.url), nil); status != 200 {
				t.Errorf("the new link answers %d", status)
			}
			tb.waitIdle(t)
			if n, m := len(tb.twilio.Messages()), len(tb.smtp.Messages()); n != 2 || m != 2 {
				t.Errorf("%d SMS and %d emails, want 2 each: the consent once more, no other", n, m)
			}
			// The same PUT again changes nothing.
			if again := tb.mustRequest(t, "PUT", "/v1/bookings/bk_r", bookingBody("bk_r", moved), 200); again.Version != 2 {
				t.Errorf("identical PUT made version %d", again.Version)
			}
			tb.checkTasks(t, "bk_r")
		})
	}
}

// TestRescheduleRepeatsReminder: a reminder already sent names the old time,
// so a reschedule plans it again; a consent the patient acknowledged is not
// repeated.
func TestRescheduleRepeatsReminder(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	// The reminder falls due 15 s from now: in the future however slowly a
	// loaded machine books (a reminder booked after its time is skipped).
	appt := time.Now().Add(24*time.Hour + 15*time.Second).Truncate(time.Second)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_rr", appt), 201)
	tb.waitStatus(t, "bk_rr", "reminder", "sms", "sent")
	if status, err := tb.twilio.Reply(tb.url+"/webhooks/twilio/inbound", patientTel, "YES"); err != nil || status != 200 {
		t.Fatalf("YES = %d, %v", status, err)
	}
	waitFor(t, time.Minute, func() bool { return tb.timeline(t, "bk_rr").ConsentAcknowledgement != nil })

	moved := appt.Add(48 * time.Hour)
	tl := tb.mustRequest(t, "PUT", "/v1/bookings/bk_rr", bookingBody("bk_rr", moved), 200)
	if st, _ := tl.status("reminder", "sms"); st != "scheduled" || !tl.sendAt("reminder", "sms").Equal(moved.Add(-24*time.Hour)) {
		t.Errorf("reminder = %s at %s, want scheduled 24 h before the new time", st, tl.sendAt("reminder", "sms"))
	}
	if st, _ := tl.status("consent", "sms"); st != "sent" {
		t.Errorf("consent = %s, want it kept as sent", st)
	}
	tb.checkTasks(t, "bk_rr")
}

func TestCancel(t *testing.T) {
	t.Parallel()
	for _, notify := range []bool{false, true} {
		t.Run(fmt.Sprint("notify=", notify), func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			appt := time.Now().Add(48 * time.Hour).Truncate(time.Second)
			tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_c", appt), 201)
			tb.waitStatus(t, "bk_c", "consent", "sms", "sent")
			tb.waitStatus(t, "bk_c", "consent", "email", "sent")

			tl := tb.mustRequest(t, "DELETE", fmt.Sprintf("/v1/bookings/bk_c?notify=%v", notify), nil, 200)
			if tl.Status != "cancelled" {
				t.Errorf("booking status = %s", tl.Status)
			}
			for _, m := range tl.Messages {
				if m.Step != aftercare.StepCancellation && m.Status != "sent" && m.Status != "cancelled" {
					t.Errorf("%s/%s = %s after cancel", m.Step, m.Channel, m.Status)
				}
			}
			wantSMS, wantEmail := 1, 1
			if notify {
				wantSMS, wantEmail = 2, 2
				tb.waitStatus(t, "bk_c", aftercare.StepCancellation, "sms", "sent")
				tb.waitStatus(t, "bk_c", aftercare.StepCancellation, "email", "sent")
				if sms := tb.twilio.Messages(); !strings.Contains(sms[len(sms)-1].Body, "is cancelled") {
					t.Errorf("last SMS is not the notice: %q", sms[len(sms)-1].Body)
				}
			}
			// Cancelling again sends no second notice.
			tb.mustRequest(t, "DELETE", "/v1/bookings/bk_c?notify=true", nil, 200)
			tb.waitIdle(t)
			if n, m := len(tb.twilio.Messages()), len(tb.smtp.Messages()); n != wantSMS || m != wantEmail {
				t.Errorf("%d SMS and %d emails, want %d and %d", n, m, wantSMS, wantEmail)
			}
			tb.checkTasks(t, "bk_c")
		})
	}
}

// TestTreated: the clinic reports the real end of treatment; the aftercare
// steps move to it, the steps before it do not.
func TestTreated(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	appt := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	body := bookingBody("bk_t", appt)
	body["duration_minutes"] = 60
	before := tb.mustRequest(t, "POST", "/v1/bookings", body, 201)
	tb.waitStatus(t, "bk_t", "consent", "sms", "sent")
	_, consentID := tb.timeline(t, "bk_t").status("consent", "sms")

	treated := time.Now().Truncate(time.Second)
	tl := tb.mustRequest(t, "POST", "/v1/bookings/bk_t/treated", map[string]string{"treated_at": treated.Format(time.RFC3339)}, 200)
	if tl.Version != 2 {
		t.Errorf("version = %d, want 2", tl.Version)
	}
	if got := tl.sendAt("lie_down", "sms"); !got.Equal(treated.Add(4 * time.Hour)) {
		t.Errorf("lie_down at %s, want 4 h after the reported end", got)
	}
	if !tl.sendAt("reminder", "sms").Equal(before.sendAt("reminder", "sms")) {
		t.Error("the reminder moved; steps before the treatment must not")
	}
	if _, id := tl.status("consent", "sms"); id != consentID {
		t.Errorf("consent provider id %q, want %q kept", id, consentID)
	}
	tb.waitStatus(t, "bk_t", "upright", "sms", "sent")
	if sms := tb.twilio.Messages(); len(sms) != 2 || !strings.Contains(sms[1].Body, "stay upright") {
		t.Fatalf("SMS sent: %d, want consent then upright", len(sms))
	}
	// The same report again changes nothing.
	if again := tb.mustRequest(t, "POST", "/v1/bookings/bk_t/treated", map[string]string{"treated_at": treated.Format(time.RFC3339)}, 200); again.Version != 2 {
		t.Errorf("repeated report made version %d", again.Version)
	}
	tb.checkTasks(t, "bk_t")
}

// TestNoShowCancelled: a booking never treated can be cancelled and gets no
// aftercare: its aftercare messages are cancelled and no task is left that
// could send one.
func TestNoShowCancelled(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	appt := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_ns", appt), 201)
	tb.waitStatus(t, "bk_ns", "consent", "sms", "sent")
	tl := tb.mustRequest(t, "DELETE", "/v1/bookings/bk_ns", nil, 200)
	for _, m := range tl.Messages {
		if !m.SendAt.Before(appt) && m.Status != string(aftercare.StatusCancelled) { // the aftercare steps
			t.Errorf("%s/%s = %s after the cancel, want cancelled", m.Step, m.Channel, m.Status)
		}
	}
	if status, _ := tb.request(t, "POST", "/v1/bookings/bk_ns/treated", map[string]string{"treated_at": time.Now().Format(time.RFC3339)}); status != 409 {
		t.Errorf("treated after cancel = %d, want 409", status)
	}
	tb.checkTasks(t, "bk_ns")
	if n := len(tb.twilio.Messages()); n != 1 {
		t.Errorf("%d SMS, want only the consent", n)
	}
}
