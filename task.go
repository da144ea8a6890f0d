package aftercare

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The task contract. Task type names, queue names and payload field names are
// stored in Redis and outlive a deploy: a worker of the next release must
// read what this one enqueued. Change them only with a migration note in the
// README.
const (
	TypeSendSMS   = "aftercare:sms"
	TypeSendEmail = "aftercare:email"
	TypeAlert     = "aftercare:alert"

	// TypeSendSMSJSON and TypeSendEmailJSON are the send tasks of earlier
	// releases, with JSON payloads, still run. New tasks have types of
	// their own so that a worker of an earlier release, which cannot read
	// their payloads, finds no handler and leaves them to be tried again
	// (by which time a new worker runs them) rather than dropping them.
	TypeSendSMSJSON   = "aftercare:send:sms"
	TypeSendEmailJSON = "aftercare:send:email"

	// QueueSMS and QueueEmail carry routine messages, each channel in its
	// own queue so that a slow mail server never holds up a text.
	QueueSMS   = "sms"
	QueueEmail = "email"
	// QueueClinical carries the messages of clinical-priority steps, on
	// either channel, served before any routine one.
	QueueClinical = "clinical"
	// QueueAlerts carries alerts to the clinic's staff, served before the
	// patients' messages.
	QueueAlerts = "alerts"
)

// SendQueues are the queues of patients' messages, clinical first.
func SendQueues() []string { return []string{QueueClinical, QueueSMS, QueueEmail} }

// MessageRef is the payload of a send task: a reference to one planned
// message of one version of a booking. It never carries patient data; the
// worker loads the booking record to find out whom to send to.
type MessageRef struct {
	BookingID string  `json:"booking_id"`
	Version   int     `json:"version"`
	Step      string  `json:"step"`
	Channel   Channel `json:"channel"`
	// Deadline is the message's send-by time (Unix seconds), so retries can
	// be timed to land before it; 0 if unknown.
	Deadline int64 `json:"deadline,omitempty"`
	// Priority is the step's (see Step.Priority); empty is routine.
	Priority Priority `json:"priority,omitempty"`
}

// TaskID is the deterministic asynq task id of the message: enqueueing the
// same message twice is refused by Redis rather than sent twice.
func (r MessageRef) TaskID() string {
	return fmt.Sprintf("%s:v%d:%s:%s", r.BookingID, r.Version, r.Step, r.Channel)
}

// SurvivesCancel reports whether the message may still go out after its
// booking is cancelled: only the cancellation notice may.
func (r MessageRef) SurvivesCancel() bool { return r.Step == StepCancellation }

// TaskType is the asynq task type that sends on the ref's channel.
func (r MessageRef) TaskType() string {
	if r.Channel == Email {
		return TypeSendEmail
	}
	return TypeSendSMS
}

// Queue is the asynq queue of the ref: the clinical queue for a clinical
// step, else its channel's.
func (r MessageRef) Queue() string {
	if r.Priority == PriorityClinical {
		return QueueClinical
	}
	if r.Channel == Email {
		return QueueEmail
	}
	return QueueSMS
}

// Payload encodes the ref as a task payload: its task id, its deadline
// and its priority, if any, separated by spaces
// ("bk_1001:v1:upright:sms 1764705600 clinical"). Earlier releases wrote
// JSON, which ParseMessageRef still reads.
func (r MessageRef) Payload() []byte {
	b := make([]byte, 0, 64)
	b = fmt.Appendf(b, "%s %d", r.TaskID(), r.Deadline)
	if r.Priority != "" {
		b = append(append(b, ' '), r.Priority...)
	}
	return b
}

// ParseMessageRef decodes a task payload, in the form Payload writes or as
// the JSON of earlier releases.
func ParseMessageRef(payload []byte) (MessageRef, error) {
	var r MessageRef
	if bytes.HasPrefix(payload, []byte("{")) {
		if err := json.Unmarshal(payload, &r); err != nil {
			return r, fmt.Errorf("decode task payload: %w", err)
		}
	} else if !r.parse(string(payload)) {
		return r, fmt.Errorf("task payload %q is not a message reference", payload)
	}
	if !ValidID(r.BookingID) || r.Version < 1 || !ValidName(r.Step) || !r.Channel.Valid() ||
		(r.Priority != "" && r.Priority != PriorityClinical && r.Priority != PriorityRoutine) {
		return r, fmt.Errorf("task payload %q is incomplete", payload)
	}
	return r, nil
}

// parse reads the form Payload writes into r.
func (r *MessageRef) parse(s string) bool {
	fields := strings.Split(s, " ")
	if len(fields) < 2 || len(fields) > 3 {
		return false
	}
	id := strings.Split(fields[0], ":")
	if len(id) != 4 || !strings.HasPrefix(id[1], "v") {
		return false
	}
	var err1, err2 error
	r.BookingID, r.Step, r.Channel = id[0], id[2], Channel(id[3])
	r.Version, err1 = strconv.Atoi(id[1][1:])
	r.Deadline, err2 = strconv.ParseInt(fields[1], 10, 64)
	if len(fields) == 3 {
		r.Priority = Priority(fields[2])
	}
	return err1 == nil && err2 == nil
}

// A run of a send task tells the task queue what comes next by the error
// it returns: nil, done; ErrFinal, never again; *Deferred, again at a given
// time; ErrRateLimited, again shortly (neither of those two counts as a
// failure); any other error, failed for now, so again after a backoff, the
// last retry landing before the message's deadline.

// ErrFinal wraps the error of a run that gave its message a final status in
// failure (failed, outcome unknown): the task is not run again, and is kept
// where operators see it (asynq's archive).
var ErrFinal = errors.New("message ended in failure; not retried")

// Deferred is the error of a run that cannot go yet (a message inside
// quiet hours, an event for a disabled endpoint): the task runs again at
// Until, without counting as a failure. Reason says why; empty is quiet
// hours.
type Deferred struct {
	Until  time.Time
	Reason string
}

func (d *Deferred) Error() string {
	reason := d.Reason
	if reason == "" {
		reason = "quiet hours"
	}
	return reason + ": deferred until " + d.Until.Format(time.RFC3339)
}

// QueueStats is the state of one task queue, for the metrics.
type QueueStats struct {
	Queue                                                  string
	Pending, Active, Scheduled, Retry, Archived, Completed int
	// Latency is the age of the oldest pending task.
	Latency time.Duration
}

// AlertRef is the payload of an alert task: tell the clinic about inbox
// item ItemID, on Channel, as round Round (0 when it arrives; 1, 2, ... as
// an urgent item is escalated again). A ref without a channel is the
// escalation check of its round: it sends that round's alerts if the item
// is still open, and plans the next check. Like a MessageRef it carries no
// patient data.
type AlertRef struct {
	ItemID  string  `json:"item_id"`
	Round   int     `json:"round"`
	Channel Channel `json:"channel,omitempty"`
}

// TaskID is the deterministic task id of the alert.
func (r AlertRef) TaskID() string {
	ch := string(r.Channel)
	if ch == "" {
		ch = "check"
	}
	return fmt.Sprintf("alert:%s:%d:%s", r.ItemID, r.Round, ch)
}

// Payload encodes the ref as a task payload.
func (r AlertRef) Payload() []byte {
	b, _ := json.Marshal(r) // cannot fail: strings and an int
	return b
}

// ParseAlertRef decodes an alert task's payload.
func ParseAlertRef(payload []byte) (AlertRef, error) {
	var r AlertRef
	if err := json.Unmarshal(payload, &r); err != nil {
		return r, fmt.Errorf("decode alert payload: %w", err)
	}
	if !ValidInboxID(r.ItemID) || r.Round < 0 || (r.Channel != "" && !r.Channel.Valid()) {
		return r, fmt.Errorf("alert payload %s is incomplete", payload)
	}
	return r, nil
}

// Run is one run of a task: its number, from 1, and whether it is the last
// the task queue will make (its retries are spent).
type Run struct {
	Attempt int
	Last    bool
}
