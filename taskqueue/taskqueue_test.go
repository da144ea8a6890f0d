package taskqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/redistest"
)

// handlerFunc adapts a function to Handler.
type handlerFunc func(ctx context.Context, ref aftercare.MessageRef, run aftercare.Run) error

func (f handlerFunc) Handle(ctx context.Context, ref aftercare.MessageRef, run aftercare.Run) error {
	return f(ctx, ref, run)
}

func ref(step string) aftercare.MessageRef {
	return aftercare.MessageRef{BookingID: "bk_q", Version: 1, Step: step, Channel: aftercare.SMS,
		Deadline: time.Now().Add(time.Hour).Unix()}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// state is the asynq state of ref's task, or "" if there is none.
func state(t *testing.T, rdb redis.UniversalClient, ref aftercare.MessageRef) asynq.TaskState {
	t.Helper()
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(ref.Queue(), ref.TaskID())
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

func TestScheduleUnschedule(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	q := New(rdb)
	ctx := context.Background()
	r := ref("day1")
	if err := q.Unschedule(ctx, r); err != nil {
		t.Fatalf("Unschedule with no queue yet: %v", err)
	}
	at := time.Now().Add(time.Hour)
	for range 2 { // a second Schedule of the same message leaves the first task
		if err := q.Schedule(ctx, r, at); err != nil {
			t.Fatal(err)
		}
	}
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(r.Queue(), r.TaskID())
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateScheduled || info.Type != aftercare.TypeSendSMS || info.MaxRetry != maxRetry || !info.NextProcessAt.Equal(at.Truncate(time.Second)) {
		t.Errorf("task = %s %s, max retry %d, at %s", info.State, info.Type, info.MaxRetry, info.NextProcessAt)
	}
	if stats, err := q.Stats(); err != nil || len(stats) != 1 || stats[0].Queue != aftercare.QueueSMS || stats[0].Scheduled != 1 {
		t.Errorf("Stats = %+v, %v; want one scheduled SMS task", stats, err)
	}
	for range 2 { // the second finds nothing to remove
		if err := q.Unschedule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if st := state(t, rdb, r); st != 0 {
		t.Errorf("task still there, %s", st)
	}
}

// TestUnscheduleRunning pins how asynq reports a task that is running: it
// cannot be deleted, and Unschedule leaves it to find its message changed.
func TestUnscheduleRunning(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	q := New(rdb)
	ctx := context.Background()
	r := ref("upright")
	started, release := make(chan struct{}), make(chan struct{})
	srv := NewServer(rdb, ServerConfig{Concurrency: 1, ShutdownTimeout: 5 * time.Second})
	var got aftercare.MessageRef
	var attempt int
	if err := srv.Start(Handlers{Sends: handlerFunc(func(_ context.Context, ref aftercare.MessageRef, r aftercare.Run) error {
		got, attempt = ref, r.Attempt
		close(started)
		<-release
		return nil
	})}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if err := q.Schedule(ctx, r, time.Now()); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := asynq.NewInspectorFromRedisClient(rdb).DeleteTask(r.Queue(), r.TaskID()); err == nil {
		t.Fatal("asynq deleted a running task")
	}
	if !q.runningOrDone(r) {
		t.Error("runningOrDone = false for a running task")
	}
	if err := q.Unschedule(ctx, r); err != nil {
		t.Errorf("Unschedule of a running task = %v, want nil", err)
	}
	close(release)
	if got != r || attempt != 1 {
		t.Errorf("handler got %+v, attempt %d; want %+v, 1", got, attempt, r)
	}
	waitFor(t, "the task is done", func() bool { return state(t, rdb, r) == 0 })
	if !q.runningOrDone(r) {
		t.Error("runningOrDone = false for a finished task")
	}
	if err := q.Schedule(ctx, r, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if q.runningOrDone(r) {
		t.Error("runningOrDone = true for a task that waits")
	}
}

// TestServerOutcomes runs tasks through a real asynq server: a final error
// leaves the task archived after one run, a deferral brings it back
// without counting a failure, a plain error retries it.
func TestServerOutcomes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	q := New(rdb)
	ctx := context.Background()
	var (
		mu   sync.Mutex
		runs = map[string][]int{}
	)
	srv := NewServer(rdb, ServerConfig{Concurrency: 4, ShutdownTimeout: 5 * time.Second})
	if err := srv.Start(Handlers{Sends: handlerFunc(func(_ context.Context, ref aftercare.MessageRef, r aftercare.Run) error {
		mu.Lock()
		runs[ref.Step] = append(runs[ref.Step], r.Attempt)
		n := len(runs[ref.Step])
		mu.Unlock()
		switch ref.Step {
		case "final":
			return fmt.Errorf("%w: twilio:21211", aftercare.ErrFinal)
		case "deferred":
			if n == 1 {
				return &aftercare.Deferred{Until: time.Now()}
			}
		case "retry":
			if n == 1 {
				return &aftercare.SendError{Class: aftercare.ErrTransient, Code: "twilio:20500", Err: errors.New("internal")}
			}
		}
		return nil
	})}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	for _, step := range []string{"final", "deferred", "retry"} {
		if err := q.Schedule(ctx, ref(step), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the final task is archived", func() bool { return state(t, rdb, ref("final")) == asynq.TaskStateArchived })
	waitFor(t, "the deferred task ran again", func() bool { return state(t, rdb, ref("deferred")) == 0 })
	waitFor(t, "the retried task ran again", func() bool { return state(t, rdb, ref("retry")) == 0 })
	mu.Lock()
	defer mu.Unlock()
	// asynq counts only failures as retries: a deferral does not.
	for step, want := range map[string]string{"final": "[1]", "deferred": "[1 1]", "retry": "[1 2]"} {
		if got := fmt.Sprint(runs[step]); got != want {
			t.Errorf("%s: attempts %s, want %s", step, got, want)
		}
	}
}

// TestBadPayloadArchived: a task whose payload is not a message reference
// is never handed to the handler, nor retried.
func TestBadPayloadArchived(t *testing.T) {
	t.Parallel()
	err := sendAdapter(handlerFunc(func(context.Context, aftercare.MessageRef, aftercare.Run) error {
		t.Error("handler called")
		return nil
	})).ProcessTask(context.Background(), asynq.NewTask(aftercare.TypeSendSMS, []byte(`{"booking_id": "bk"}`)))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("ProcessTask = %v, want SkipRetry", err)
	}
	email := ref("day1")
	email.Channel = aftercare.Email
	err = sendAdapter(handlerFunc(func(context.Context, aftercare.MessageRef, aftercare.Run) error { return nil })).
		ProcessTask(context.Background(), asynq.NewTask(aftercare.TypeSendSMS, email.Payload()))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("an email payload in an SMS task: %v, want SkipRetry", err)
	}
}

// TestEarlierReleaseTasks: send tasks queued by an earlier release (their
// types, JSON payloads) still run; this release's send tasks find no
// handler in an earlier release's worker, which then leaves them to be
// tried again, where its payload check would have archived them.
func TestEarlierReleaseTasks(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	got := make(chan aftercare.MessageRef, 1)
	srv := NewServer(rdb, ServerConfig{Concurrency: 1, ShutdownTimeout: 5 * time.Second})
	if err := srv.Start(Handlers{Sends: handlerFunc(func(_ context.Context, ref aftercare.MessageRef, _ aftercare.Run) error {
		got <- ref
		return nil
	})}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	old := aftercare.MessageRef{BookingID: "bk_old", Version: 3, Step: "day1", Channel: aftercare.Email, Deadline: time.Now().Add(time.Hour).Unix()}
	payload := fmt.Sprintf(`{"booking_id":"bk_old","version":3,"step":"day1","channel":"email","deadline":%d}`, old.Deadline)
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(asynq.NewTask(aftercare.TypeSendEmailJSON, []byte(payload)), asynq.Queue(aftercare.QueueEmail), asynq.TaskID(old.TaskID())); err != nil {
		t.Fatal(err)
	}
	select {
	case ref := <-got:
		if ref != old {
			t.Errorf("handler got %+v, want %+v", ref, old)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an earlier release's task did not run")
	}

	earlier := asynq.NewServeMux() // the patterns an earlier release's worker serves
	for _, typ := range []string{aftercare.TypeSendSMSJSON, aftercare.TypeSendEmailJSON, aftercare.TypeAlert, aftercare.TypeWebhook} {
		earlier.HandleFunc(typ, func(context.Context, *asynq.Task) error { return asynq.SkipRetry })
	}
	for _, r := range []aftercare.MessageRef{ref("day1"), old} {
		err := earlier.ProcessTask(context.Background(), asynq.NewTask(r.TaskType(), r.Payload()))
		if !errors.Is(err, asynq.ErrHandlerNotFound) {
			t.Errorf("an earlier worker given a %s task: %v, want no handler", r.TaskType(), err)
		}
	}
}

func TestIsFailure(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&aftercare.Deferred{Until: time.Now()}, false},
		{fmt.Errorf("wait: %w", &aftercare.SendError{Class: aftercare.ErrRateLimited, Err: errors.New("x")}), false},
		{&aftercare.SendError{Class: aftercare.ErrTransient, Err: errors.New("x")}, true},
		{errors.New("boom"), true},
	} {
		if got := isFailure(tt.err); got != tt.want {
			t.Errorf("isFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	transient := &aftercare.SendError{Class: aftercare.ErrTransient, Err: errors.New("x")}
	limited := &aftercare.SendError{Class: aftercare.ErrRateLimited, Err: errors.New("x")}
	tests := []struct {
		n        int
		err      error
		min, max time.Duration
	}{
		{0, transient, 4 * time.Second, 6 * time.Second},
		{3, transient, 32 * time.Second, 48 * time.Second},
		{20, transient, 8 * time.Minute, 12 * time.Minute},
		{5, limited, 800 * time.Millisecond, 1200 * time.Millisecond},
		{0, &aftercare.Deferred{Until: time.Now().Add(time.Hour)}, 59 * time.Minute, time.Hour},
	}
	for _, tt := range tests {
		for range 50 {
			if d := retryDelay(tt.n, tt.err, nil); d < tt.min || d > tt.max {
				t.Fatalf("retryDelay(%d, %v) = %s, want in [%s, %s]", tt.n, tt.err, d, tt.min, tt.max)
			}
		}
	}

	// A retry never lands after the message's deadline.
	r := aftercare.MessageRef{BookingID: "bk", Version: 1, Step: "upright", Channel: aftercare.SMS,
		Deadline: time.Now().Add(90 * time.Second).Unix()}
	task := asynq.NewTask(r.TaskType(), r.Payload())
	for n := range 10 {
		d := retryDelay(n, transient, task)
		if at := time.Now().Add(d); at.After(time.Unix(r.Deadline, 0)) {
			t.Errorf("retry %d in %s lands after the deadline", n, d)
		}
	}
	if d := retryDelay(20, transient, task); d > 90*time.Second || d < 60*time.Second {
		t.Errorf("late retry in %s, want it just before the deadline", d)
	}
}

// TestWebhookDelay: deliveries follow the Standard Webhooks schedule, with
// a little jitter, and a receiver's Retry-After when it gives one.
func TestWebhookDelay(t *testing.T) {
	t.Parallel()
	task := asynq.NewTask(aftercare.TypeWebhook, nil)
	failed := errors.New("endpoint crm answered 500")
	total := time.Duration(0)
	for n, want := range []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour} {
		d := retryDelay(n, failed, task)
		if d < want*9/10 || d > want*11/10 {
			t.Errorf("retry %d after %s, want %s ±10%%", n+1, d, want)
		}
		total += want
	}
	if total < 27*time.Hour || total > 28*time.Hour {
		t.Errorf("the schedule spans %s, want about a day", total)
	}
	ra := &aftercare.RetryAfter{At: time.Now().Add(3 * time.Minute), Err: failed}
	if d := retryDelay(0, ra, task); d < 2*time.Minute+55*time.Second || d > 3*time.Minute {
		t.Errorf("with Retry-After in 3 minutes: %s", d)
	}
	soon := &aftercare.RetryAfter{At: time.Now().Add(time.Second), Err: failed}
	if d := retryDelay(2, soon, task); d < 27*time.Minute {
		t.Errorf("with Retry-After in a second, the third retry waits %s, want the schedule's 30 minutes", d)
	}
	parked := &aftercare.Deferred{Until: time.Now().Add(5 * time.Minute)}
	if d := retryDelay(6, parked, task); d < 4*time.Minute || d > 5*time.Minute || isFailure(parked) {
		t.Errorf("a parked delivery waits %s (failure %v), want 5 minutes, not a failure", d, isFailure(parked))
	}
}

// TestClinicalBeforeRoutine: with every routine worker busy and a backlog
// of routine texts waiting, a clinical text due now is run at once, on the
// urgent workers, before any of the backlog.
func TestClinicalBeforeRoutine(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	q := New(rdb)
	ctx := context.Background()
	release := make(chan struct{})
	var (
		mu      sync.Mutex
		busy    int
		order   []string
		started = make(chan string, 100)
	)
	srv := NewServer(rdb, ServerConfig{Concurrency: 2, UrgentConcurrency: 1, ShutdownTimeout: 5 * time.Second})
	if err := srv.Start(Handlers{Sends: handlerFunc(func(_ context.Context, ref aftercare.MessageRef, _ aftercare.Run) error {
		mu.Lock()
		order = append(order, ref.BookingID)
		mu.Unlock()
		started <- ref.BookingID
		if ref.Priority != aftercare.PriorityClinical {
			<-release // a routine send held, as behind a rate limit
		}
		return nil
	})}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	t.Cleanup(func() { close(release) })

	for i := range 20 {
		r := aftercare.MessageRef{BookingID: fmt.Sprintf("bk_routine_%02d", i), Version: 1, Step: "day14", Channel: aftercare.SMS}
		if err := q.Schedule(ctx, r, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	next := func() string {
		t.Helper()
		select {
		case id := <-started:
			return id
		case <-time.After(time.Minute):
			t.Fatal("no task ran in a minute")
			return ""
		}
	}
	for busy < 2 { // both routine workers hold a text
		next()
		busy++
	}
	clinical := aftercare.MessageRef{BookingID: "bk_upright", Version: 1, Step: "upright", Channel: aftercare.SMS,
		Priority: aftercare.PriorityClinical}
	if clinical.Queue() != aftercare.QueueClinical {
		t.Fatalf("a clinical ref's queue is %q", clinical.Queue())
	}
	if err := q.Schedule(ctx, clinical, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "bk_upright" {
		t.Errorf("%s ran next, want the clinical text while the routine workers are busy", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 3 {
		t.Errorf("ran %v, want two routine texts then the clinical one, the backlog still waiting", order)
	}
}

// TestUnscheduleOtherPriority: a task put under one priority is found and
// removed when its step's priority has changed since.
func TestUnscheduleOtherPriority(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	q := New(rdb)
	ctx := context.Background()
	put := ref("upright")
	put.Priority = aftercare.PriorityClinical
	if err := q.Schedule(ctx, put, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := q.Unschedule(ctx, ref("upright")); err != nil {
		t.Fatal(err)
	}
	if st := state(t, rdb, put); st != 0 {
		t.Errorf("the clinical task is %v after Unschedule of its routine ref, want gone", st)
	}
}

// TestScheduleKeepsRoutineCopy: a booking made before its step was
// clinical has the step's task in its channel's queue; scheduling the
// message again, now clinical, puts no second copy in the clinical queue.
func TestScheduleKeepsRoutineCopy(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	q := New(rdb)
	ctx := context.Background()
	old := ref("upright") // routine, as written before priorities
	if err := q.Schedule(ctx, old, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	now := old
	now.Priority = aftercare.PriorityClinical
	if err := q.Schedule(ctx, now, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st := state(t, rdb, now); st != 0 {
		t.Errorf("a clinical copy is %v beside the routine task", st)
	}
	if st := state(t, rdb, old); st != asynq.TaskStateScheduled {
		t.Errorf("the routine task is %v, want scheduled", st)
	}
	if err := q.Unschedule(ctx, now); err != nil {
		t.Fatal(err)
	}
	if st := state(t, rdb, old); st != 0 {
		t.Errorf("the routine task is %v after Unschedule of the clinical ref, want gone", st)
	}
}
