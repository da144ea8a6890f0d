// Package taskqueue keeps aftercare's send tasks in Redis with asynq, the
// one package that does: it puts the task of a planned message in and takes
// it out again by the message's reference, runs the worker under an asynq
// server set up for sending (queues, retry delays, what counts as a
// failure), and reports the queues for the metrics.
package taskqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// Per task: how often a failing send is retried (its deadline cuts retries
// short, see retryDelay), and how long one run may take.
const (
	maxRetry = 25
	timeout  = time.Minute
)

// Queue puts send tasks into Redis and takes them out again. It is safe
// for concurrent use.
type Queue struct {
	client    *asynq.Client
	inspector *asynq.Inspector
}

// New returns a Queue on rdb, which it shares and does not close.
func New(rdb redis.UniversalClient) *Queue {
	return &Queue{asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb)}
}

// Schedule makes sure the task of message ref exists, due at at, with ref
// as its payload and ref's task id. A task with that id already there is
// left as it is: Redis refuses a second copy of a message's task in a
// queue. asynq's refusal holds within one queue only, so a clinical task
// is not put in while its message's task waits in its channel's queue, as
// those of bookings made before steps had priorities do.
func (q *Queue) Schedule(ctx context.Context, ref aftercare.MessageRef, at time.Time) error {
	if routine := elsewhere(ref); ref.Priority == aftercare.PriorityClinical {
		switch _, err := q.inspector.GetTaskInfo(routine.Queue(), routine.TaskID()); {
		case err == nil:
			return nil
		case !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound):
			return fmt.Errorf("look for task %s: %w", ref.TaskID(), err)
		}
	}
	return q.ScheduleNew(ctx, ref, at)
}

// ScheduleNew puts in the task of message ref, due at at, for a booking
// just made: no task of its messages can be anywhere yet, so a clinical
// one is not first looked for in its channel's queue, as Schedule does.
func (q *Queue) ScheduleNew(ctx context.Context, ref aftercare.MessageRef, at time.Time) error {
	return q.enqueue(ctx, ref.TaskType(), ref.Queue(), ref.TaskID(), ref.Payload(), at)
}

// enqueue puts a task in queue, due at at, unless one with its id is there.
func (q *Queue) enqueue(ctx context.Context, typ, queue, id string, payload []byte, at time.Time) error {
	task := asynq.NewTask(typ, payload,
		asynq.TaskID(id),
		asynq.Queue(queue),
		asynq.ProcessAt(at),
		asynq.MaxRetry(maxRetry),
		asynq.Timeout(timeout),
	)
	_, err := q.client.EnqueueContext(ctx, task)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue %s: %w", id, err)
	}
	return nil
}

// Unschedule removes the task of message ref. A task that is gone (it ran,
// or never was) is no error, nor is one that is running: it finds its
// message changed when it claims it, and stops. The task is looked for in
// the other priority's queue too (its step's priority may have changed
// since it was put).
//
// asynq's deletion takes no context; ctx is checked before it starts.
func (q *Queue) Unschedule(ctx context.Context, ref aftercare.MessageRef) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, r := range []aftercare.MessageRef{ref, elsewhere(ref)} {
		err := q.inspector.DeleteTask(r.Queue(), r.TaskID())
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) && !q.runningOrDone(r) {
			return fmt.Errorf("delete task %s: %w", r.TaskID(), err)
		}
	}
	return nil
}

// elsewhere is ref under the other priority, whose queue its message's task
// may be in.
func elsewhere(ref aftercare.MessageRef) aftercare.MessageRef {
	if ref.Priority == aftercare.PriorityClinical {
		ref.Priority = aftercare.PriorityRoutine
	} else {
		ref.Priority = aftercare.PriorityClinical
	}
	return ref
}

// runningOrDone reports whether the task of ref, which asynq would not
// delete, is running, or has finished since (a send that ended between the
// refusal and this look): either way it is not waiting any more, and finds
// or found its message changed when it claimed it. asynq refuses to delete
// a running task with an error that has no value to test for, so the
// task's state is asked for instead.
func (q *Queue) runningOrDone(ref aftercare.MessageRef) bool {
	info, err := q.inspector.GetTaskInfo(ref.Queue(), ref.TaskID())
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return true
	}
	return err == nil && (info.State == asynq.TaskStateActive || info.State == asynq.TaskStateCompleted)
}

// Alert makes sure the alert task ref exists, due at at; one with its id
// already there is left as it is.
func (q *Queue) Alert(ctx context.Context, ref aftercare.AlertRef, at time.Time) error {
	return q.enqueue(ctx, aftercare.TypeAlert, aftercare.QueueAlerts, ref.TaskID(), ref.Payload(), at)
}

// Webhook deliveries: the specification's schedule, so eight runs over
// about a day; a completed delivery is kept a day, so that the relay cannot
// queue an event twice and an operator can send it again by its id.
const (
	webhookRetries   = 7
	webhookTimeout   = 30 * time.Second
	webhookRetention = 24 * time.Hour
)

// Deliver queues the delivery of one event to one endpoint, due now,
// unless it is queued or was delivered within webhookRetention.
func (q *Queue) Deliver(ctx context.Context, d aftercare.Delivery) error {
	return q.deliver(ctx, d, d.TaskID())
}

func (q *Queue) deliver(ctx context.Context, d aftercare.Delivery, id string) error {
	task := asynq.NewTask(aftercare.TypeWebhook, d.Payload(),
		asynq.TaskID(id),
		asynq.Queue(aftercare.QueueWebhooks),
		asynq.MaxRetry(webhookRetries),
		asynq.Timeout(webhookTimeout),
		asynq.Retention(webhookRetention),
	)
	if _, err := q.client.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue %s: %w", id, err)
	}
	return nil
}

// Redeliver sends event id again to each of endpoints that it went to or
// failed to reach, with a fresh retry schedule and the same webhook-id. A
// delivery still on its way is left as it is. It returns how many
// deliveries it queued or found queued; none is ENOTFOUND.
func (q *Queue) Redeliver(ctx context.Context, id string, endpoints []string) (int, error) {
	n := 0
	for _, name := range endpoints {
		d := aftercare.Delivery{Endpoint: name, EventID: id}
		info, err := q.inspector.GetTaskInfo(aftercare.QueueWebhooks, d.TaskID())
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("find delivery %s: %w", d.TaskID(), err)
		}
		if err := q.again(ctx, info); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, aftercare.Errorf(aftercare.ENOTFOUND, "no event %q: deliveries are kept a day after they succeed, and in the archive after they fail", id)
	}
	return n, nil
}

// RedeliverFailed sends again every delivery whose retries ran out since
// since, and returns how many.
func (q *Queue) RedeliverFailed(ctx context.Context, since time.Time) (int, error) {
	failed, err := q.deliveries(q.inspector.ListArchivedTasks, func(t *asynq.TaskInfo) bool { return !t.LastFailedAt.Before(since) })
	if err != nil {
		return 0, err
	}
	for i, t := range failed {
		if err := q.again(ctx, t); err != nil {
			return i, err
		}
	}
	return len(failed), nil
}

// Release runs at once the deliveries to endpoint that wait for it to be
// enabled (or for their next retry), and returns how many.
func (q *Queue) Release(ctx context.Context, endpoint string) (int, error) {
	waiting, err := q.deliveries(q.inspector.ListRetryTasks, func(t *asynq.TaskInfo) bool {
		d, err := aftercare.ParseDelivery(t.Payload)
		return err == nil && d.Endpoint == endpoint
	})
	if err != nil {
		return 0, err
	}
	for i, t := range waiting {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		if err := q.inspector.RunTask(aftercare.QueueWebhooks, t.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return i, fmt.Errorf("run delivery %s: %w", t.ID, err)
		}
	}
	return len(waiting), nil
}

// deliveries lists, page by page, the webhook tasks list gives that keep
// accepts: all of them first, since acting on them changes the pages.
func (q *Queue) deliveries(list func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error), keep func(*asynq.TaskInfo) bool) ([]*asynq.TaskInfo, error) {
	const size = 100
	var out []*asynq.TaskInfo
	for page := 1; ; page++ {
		tasks, err := list(aftercare.QueueWebhooks, asynq.Page(page), asynq.PageSize(size))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list deliveries: %w", err)
		}
		for _, t := range tasks {
			if keep(t) {
				out = append(out, t)
			}
		}
		if len(tasks) < size {
			return out, nil
		}
	}
}

// again queues the delivery t once more, under its own task id, with a
// fresh retry schedule: the failed or completed task makes way for it.
func (q *Queue) again(ctx context.Context, t *asynq.TaskInfo) error {
	switch t.State {
	case asynq.TaskStatePending, asynq.TaskStateActive, asynq.TaskStateScheduled, asynq.TaskStateRetry:
		return nil // on its way
	}
	d, err := aftercare.ParseDelivery(t.Payload)
	if err != nil {
		return err
	}
	if err := q.inspector.DeleteTask(aftercare.QueueWebhooks, t.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return fmt.Errorf("make way for delivery %s: %w", t.ID, err)
	}
	return q.deliver(ctx, d, t.ID)
}

// Stats reports the size and latency of each send queue that exists (asynq
// makes a queue when its first task is enqueued).
func (q *Queue) Stats() ([]aftercare.QueueStats, error) {
	names, err := q.inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	var stats []aftercare.QueueStats
	for _, name := range append(append([]string{aftercare.QueueAlerts}, aftercare.SendQueues()...), aftercare.QueueWebhooks) {
		if !slices.Contains(names, name) {
			continue
		}
		info, err := q.inspector.GetQueueInfo(name)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", name, err)
		}
		stats = append(stats, aftercare.QueueStats{
			Queue: name, Pending: info.Pending, Active: info.Active, Scheduled: info.Scheduled,
			Retry: info.Retry, Archived: info.Archived, Completed: info.Completed, Latency: info.Latency,
		})
	}
	return stats, nil
}
