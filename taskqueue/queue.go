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
// left as it is: Redis refuses a second copy of a message's task.
func (q *Queue) Schedule(ctx context.Context, ref aftercare.MessageRef, at time.Time) error {
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
// message changed when it claims it, and stops.
//
// asynq's deletion takes no context; ctx is checked before it starts.
func (q *Queue) Unschedule(ctx context.Context, ref aftercare.MessageRef) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := q.inspector.DeleteTask(ref.Queue(), ref.TaskID())
	if err == nil || errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) || q.running(ref) {
		return nil
	}
	return fmt.Errorf("delete task %s: %w", ref.TaskID(), err)
}

// running reports whether the task of ref is being run now. asynq refuses
// to delete a running task with an error that has no value to test for, so
// its state is asked for instead.
func (q *Queue) running(ref aftercare.MessageRef) bool {
	info, err := q.inspector.GetTaskInfo(ref.Queue(), ref.TaskID())
	return err == nil && info.State == asynq.TaskStateActive
}

// Alert makes sure the alert task ref exists, due at at; one with its id
// already there is left as it is.
func (q *Queue) Alert(ctx context.Context, ref aftercare.AlertRef, at time.Time) error {
	return q.enqueue(ctx, aftercare.TypeAlert, aftercare.QueueAlerts, ref.TaskID(), ref.Payload(), at)
}

// Stats reports the size and latency of each send queue that exists (asynq
// makes a queue when its first task is enqueued).
func (q *Queue) Stats() ([]aftercare.QueueStats, error) {
	names, err := q.inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	var stats []aftercare.QueueStats
	for _, name := range []string{aftercare.QueueAlerts, aftercare.QueueSMS, aftercare.QueueEmail} {
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
