// Package service builds aftercare's booking side from its configuration:
// the one way both `aftercare serve` and a Go backend build it, so that a
// backend that books in Go writes records exactly as the service does:
// encrypted under the same data keys, planned by the same protocols and
// clinic profile, kept as long, and marked for the same event endpoints.
//
// A Go backend reads the service's own environment:
//
//	bookings, err := service.Connect(ctx, os.LookupEnv)
//	if err != nil {
//		return err // names the setting and the fix
//	}
//	defer bookings.Close()
//	timeline, created, err := bookings.Book(ctx, booking)
//
// or builds the configuration as a struct and calls [Bookings] on a Redis
// client of its own.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/inbox"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

// Protocols loads the built-in protocols and red flags, and those of dir if
// given: its protocols add to or replace the built-in ones, and its
// red_flags.yaml adds to theirs.
func Protocols(dir string) (map[string]aftercare.Protocol, *aftercare.RedFlags, error) {
	set, err := protocol.Builtin()
	if err != nil {
		return nil, nil, fmt.Errorf("built-in protocols: %w", err)
	}
	shared, err := protocol.BuiltinRedFlags()
	if err != nil {
		return nil, nil, fmt.Errorf("built-in red flags: %w", err)
	}
	if dir == "" {
		return set, protocol.RedFlags(set, shared), nil
	}
	extra, err := protocol.Load(os.DirFS(dir))
	if err != nil {
		return nil, nil, fmt.Errorf("AFTERCARE_PROTOCOLS_DIR: %w", err)
	}
	extraFlags, err := protocol.LoadRedFlags(os.DirFS(dir))
	if err != nil {
		return nil, nil, fmt.Errorf("AFTERCARE_PROTOCOLS_DIR: %w", err)
	}
	set = protocol.Merge(set, extra)
	return set, protocol.RedFlags(set, shared, extraFlags), nil
}

// Store returns the booking store cfg describes, on rdb: sealed with cfg's
// data keys, and marking each change for the event relay when cfg has event
// endpoints (a mark that fails is logged to log).
func Store(rdb redis.UniversalClient, cfg *config.Config, log *slog.Logger) (*redisstore.Store, error) {
	store, err := redisstore.NewSealed(rdb, cfg.DataKeys)
	if err != nil {
		return nil, fmt.Errorf("AFTERCARE_DATA_KEY: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	store.OnPlaintext(func(id string) {
		log.Error("a booking was stored in plain text, by a client without the data keys; it is encrypted now, and aftercare rekey renames its number's index. Build Go clients with service.Connect or service.Bookings, which take the keys",
			"booking", id)
	})
	if len(cfg.Endpoints) > 0 {
		store.RecordEvents(func(member string, err error) {
			log.Error("a change is stored but not marked for its events: they go out with the booking's next change",
				"mark", member, "error", err)
		})
	}
	return store, nil
}

// Side is the booking side of the service on one Redis client: the store,
// the task queue, the scheduler and the clinic inbox, wired to each other.
// The inbox takes the scheduler's problems (a message that can no longer
// reach the patient), and the scheduler carries out what patients' texts
// ask of the inbox.
type Side struct {
	Store    *redisstore.Store
	Queue    *taskqueue.Queue
	Bookings *scheduler.Client
	Inbox    *inbox.Inbox
}

// Senders are what the inbox needs to answer patients and to alert staff
// itself. Without them a side's inbox only files items and queues their
// alerts, which the service's worker sends.
type Senders struct {
	Renderer   inbox.Renderer
	SMS, Email inbox.Sender
	RedFlags   *aftercare.RedFlags
}

// NewSide builds the booking side cfg describes on rdb, with protocols
// (see Protocols). log (slog.Default if nil) hears of what the service
// logs: a change not marked for its events, a plain record found, a
// problem filed.
func NewSide(rdb redis.UniversalClient, cfg *config.Config, protocols map[string]aftercare.Protocol, senders Senders, log *slog.Logger) (*Side, error) {
	if log == nil {
		log = slog.Default()
	}
	store, err := Store(rdb, cfg, log)
	if err != nil {
		return nil, err
	}
	s := &Side{Store: store, Queue: taskqueue.New(rdb)}
	s.Bookings = scheduler.New(store, s.Queue, scheduler.Config{
		Protocols: protocols, Clinic: cfg.Clinic, Retention: cfg.Retention,
		Problems: scheduler.ProblemsFunc(func(ctx context.Context, p aftercare.Problem) error { return s.Inbox.Report(ctx, p) }),
	})
	s.Inbox = inbox.New(inbox.Config{
		Store: store, Bookings: s.Bookings, Renderer: senders.Renderer, Alerts: s.Queue, SMS: senders.SMS, Email: senders.Email,
		Clinic: cfg.Clinic, RedFlags: senders.RedFlags, Retention: cfg.Retention, Logger: log,
	})
	return s, nil
}

// Bookings returns the client that books, reschedules and cancels, built
// from cfg on rdb as the service builds its own: a message planned too late
// to go (a clinical step whose deadline passed before the booking came)
// becomes an item of the clinic inbox and alerts staff, as through the
// service's API. log is as for NewSide.
func Bookings(rdb redis.UniversalClient, cfg *config.Config, log *slog.Logger) (*scheduler.Client, error) {
	protocols, _, err := Protocols(cfg.ProtocolsDir)
	if err != nil {
		return nil, err
	}
	side, err := NewSide(rdb, cfg, protocols, Senders{}, log)
	if err != nil {
		return nil, err
	}
	return side.Bookings, nil
}

// Client is a booking client with the Redis connection it opened.
type Client struct {
	*scheduler.Client
	rdb redis.UniversalClient
}

// Close closes the client's Redis connection.
func (c *Client) Close() error { return c.rdb.Close() }

// Connect reads the service's configuration through lookup (os.LookupEnv:
// the variables of `aftercare serve`), opens the Redis of REDIS_URL, checks
// that it answers, and returns a booking client built as the service's.
func Connect(ctx context.Context, lookup func(string) (string, bool)) (*Client, error) {
	cfg, err := config.Load(lookup)
	if err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	if cfg.RedisURL == "" {
		return nil, errors.New("REDIS_URL is not set: a backend books into the Redis the service uses; set REDIS_URL as the service has it")
	}
	target, err := redisstore.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := target.Client(0)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("REDIS_URL: Redis does not answer: %s", aftercare.Redact(err.Error()))
	}
	bookings, err := Bookings(rdb, cfg, nil)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &Client{Client: bookings, rdb: rdb}, nil
}
