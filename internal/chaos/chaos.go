// Package chaos runs aftercare's worker processes under faults and checks
// every message against what the providers received: it books appointments
// whose messages fall due over a window, runs "aftercare serve --role
// worker" processes against a private redis-server (AOF on), a fake Twilio
// and an SMTP server, breaks them at random (see faults), and then counts,
// message by message, what went out once, twice, or never.
// cmd/aftercare-chaos is its command line.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/consent"
	"github.com/aftercare/aftercare/internal/redisproc"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

// Config shapes a run.
type Config struct {
	// Aftercare is the aftercare binary the workers run.
	Aftercare string
	// Bookings are made at an even pace over the first half of Window.
	// Each has an SMS and an email consent due at once and an SMS at the
	// end of treatment due later in the window.
	Bookings int
	// Workers are the worker processes, each sending Concurrency messages
	// at once.
	Workers, Concurrency int
	// Window is how long bookings come in and messages fall due, with a
	// fault every Every on average; Settle bounds the wait after it for
	// every due message to reach a final status.
	Window, Every, Settle time.Duration
	// Faults names the faults to pick from (see FaultNames); empty: all.
	Faults []string
	// Seed picks the faults and their timing; 0 picks a seed (reported).
	Seed uint64
	// CrashRedis restarts redis-server with SIGKILL instead of a clean
	// shutdown; Fsync is its appendfsync policy, everysec or always.
	CrashRedis bool
	Fsync      string
	// Keep keeps the Redis data and worker logs, as a failed run does.
	Keep bool
	// Progress gets a line per fault and every 10 s; nil for none.
	Progress io.Writer
}

// Defaults are the settings of a full run (Aftercare aside).
var Defaults = Config{
	Bookings: 2000, Workers: 3, Concurrency: 10,
	Window: 3 * time.Minute, Every: 10 * time.Second, Settle: 4 * time.Minute, Fsync: "everysec",
}

func (c Config) check() error {
	switch {
	case c.Aftercare == "":
		return errors.New("chaos: no aftercare binary to run as workers")
	case c.Bookings < 1 || c.Workers < 1 || c.Concurrency < 1 || c.Every <= 0 || c.Settle <= 0:
		return errors.New("chaos: bookings, workers, concurrency, every and settle must be positive")
	case c.Window < 20*time.Second:
		return errors.New("chaos: the window must be at least 20s")
	case c.Fsync != "everysec" && c.Fsync != "always":
		return fmt.Errorf("chaos: fsync %q: use everysec or always", c.Fsync)
	}
	for _, name := range c.Faults {
		if _, ok := faultByName(name); !ok {
			return fmt.Errorf("chaos: unknown fault %q; the faults are %v", name, FaultNames())
		}
	}
	return nil
}

// lead is how long after booking a message falls due at the earliest.
func (c Config) lead() time.Duration { return min(15*time.Second, c.Window/4) }

// Report is the outcome of a run.
type Report struct {
	Config Config
	// Faults counts the faults made, by name.
	Faults map[string]int
	Tally
	// Events counts the signed events the clinic's receiver took.
	Events Events
	// PeakRSS is each worker's peak resident set (KiB), of those running at
	// the end.
	PeakRSS map[int]int64
	// Dir holds the Redis data and worker logs if the run kept them.
	Dir string
}

// OK reports whether every due message went out once or ended with its
// reason, and no worker misbehaved.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// run is one chaos run.
type run struct {
	Config
	dir      string
	redis    *redisproc.Server
	rdb      *redis.Client
	twilio   *twiliotest.Server
	mail     *smtptest.Server
	receiver *receiver
	env      []string
	rng      *rand.Rand
	faults   []fault
	start    time.Time

	logMu sync.Mutex // one progress line at a time

	mu     sync.Mutex
	procs  []*workerProc // live workers
	count  int           // workers started
	exits  []string      // workers that exited on their own
	made   map[string]int
	booked atomic.Int64
}

const (
	from       = "care@chaos.example"
	clinicYAML = "name: Chaos Clinic\nphone: \"+1 555 555 0199\"\naddress: 1 Test Street\ntimezone: UTC\n"
)

// Run makes a chaos run and reports what happened to every message. The
// error is for a run that could not be made; problems found are in the
// report (see Report.OK).
func Run(ctx context.Context, cfg Config) (rep Report, err error) {
	if err := cfg.check(); err != nil {
		return Report{}, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	c := &run{Config: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed>>1)), made: map[string]int{}}
	for _, f := range faults {
		if len(cfg.Faults) == 0 || slices.Contains(cfg.Faults, f.name) {
			c.faults = append(c.faults, f)
		}
	}
	if c.dir, err = os.MkdirTemp("", "aftercare-chaos-"); err != nil {
		return Report{}, err
	}
	defer func() {
		if err != nil || !rep.OK() || c.Keep {
			rep.Dir = c.dir
			return
		}
		os.RemoveAll(c.dir)
	}()
	stop, err := c.startServices()
	if err != nil {
		return Report{}, err
	}
	defer stop()
	return c.run(ctx)
}

// startServices starts redis-server, the fake Twilio and the SMTP server,
// and returns the function that stops them.
func (c *run) startServices() (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	if c.redis, err = redisproc.StartServer(c.dir, "--appendonly", "yes", "--appendfsync", c.Fsync); err != nil {
		return nil, fmt.Errorf("chaos needs redis-server: %w", err)
	}
	stops = append(stops, c.redis.Stop)
	c.rdb = redis.NewClient(&redis.Options{Addr: c.redis.Addr})
	stops = append(stops, func() { c.rdb.Close() })
	c.twilio = twiliotest.New(twiliotest.AccountSID, twiliotest.AuthToken)
	stops = append(stops, c.twilio.Close)
	if c.mail, err = smtptest.New(); err != nil {
		return nil, err
	}
	stops = append(stops, func() { c.mail.Close() })
	if c.receiver, err = newReceiver(); err != nil {
		return nil, err
	}
	stops = append(stops, c.receiver.close)

	clinicFile := filepath.Join(c.dir, "clinic.yaml")
	if err := os.WriteFile(clinicFile, []byte(clinicYAML), 0o600); err != nil {
		return nil, err
	}
	c.env = []string{
		"AFTERCARE_ENV=development", "REDIS_URL=redis://" + c.redis.Addr, "HTTP_ADDR=127.0.0.1:0",
		"AFTERCARE_API_TOKENS=chaos", "AFTERCARE_DATA_KEY=", "AFTERCARE_PROTOCOLS_DIR=",
		"TWILIO_ACCOUNT_SID=" + twiliotest.AccountSID, "TWILIO_AUTH_TOKEN=" + twiliotest.AuthToken, "TWILIO_FROM_NUMBER=+15555550100",
		"TWILIO_MESSAGING_SERVICE_SID=", "TWILIO_API_BASE_URL=" + c.twilio.URL(), "AFTERCARE_PUBLIC_URL=",
		"SMTP_URL=" + c.mail.URL(), "MAIL_FROM=" + from,
		"AFTERCARE_CLINIC_FILE=" + clinicFile, "AFTERCARE_OUTBOX_FILE=", "LOG_FORMAT=json",
		"SMS_RATE_LIMIT=100", "EMAIL_RATE_LIMIT=50", fmt.Sprintf("WORKER_CONCURRENCY=%d", c.Concurrency),
		"SHUTDOWN_TIMEOUT=15s", "AFTERCARE_WEBHOOK_URL=" + c.receiver.srv.URL + "/events", "AFTERCARE_WEBHOOK_SECRET=" + eventSecret,
		"AFTERCARE_WEBHOOKS_FILE=",
	}
	return stop, nil
}

// run books, breaks things until the window ends, waits for the messages
// due to settle, and tallies them.
func (c *run) run(ctx context.Context) (Report, error) {
	clinic, err := config.LoadClinic(filepath.Join(c.dir, "clinic.yaml"))
	if err != nil {
		return Report{}, err
	}
	protocols, err := protocol.Builtin()
	if err != nil {
		return Report{}, err
	}
	store := redisstore.New(c.rdb)
	store.RecordEvents(func(member string, err error) { c.logf("events mark of %s failed: %v", member, err) })
	sched := scheduler.New(store, taskqueue.New(c.rdb), scheduler.Config{Protocols: protocols, Clinic: clinic})

	c.logf("seed %d: %d bookings over %s, %d workers, a fault every %s on average",
		c.Seed, c.Bookings, c.Window/2, c.Workers, c.Every)
	c.start = time.Now()
	for range c.Workers {
		if err := c.startWorker(); err != nil {
			return Report{}, err
		}
	}
	defer c.stopWorkers()

	runCtx, cancel := context.WithTimeout(ctx, c.Window)
	defer cancel()
	booked := make(chan error, 1)
	go func() { booked <- c.book(runCtx, sched) }()
	if err := c.breakThings(runCtx); err != nil {
		return Report{}, err
	}
	if err := <-booked; err != nil {
		return Report{}, err
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	c.twilio.SetStall(0)
	// Replace any worker lost to a fault at the very end, then wait.
	for len(c.live()) < c.Workers {
		if err := c.startWorker(); err != nil {
			return Report{}, err
		}
	}
	cutoff := time.Now()
	recs, err := c.wait(ctx, store, cutoff)
	if err != nil {
		return Report{}, err
	}
	events, lost, err := c.waitEvents(ctx, recs)
	if err != nil {
		return Report{}, err
	}
	peaks := c.stopWorkers()

	renderer, err := c.renderer(clinic, protocols)
	if err != nil {
		return Report{}, err
	}
	received, unmatched, err := matchReceived(recs, renderer, c.twilio.Messages(), c.mail.Messages())
	if err != nil {
		return Report{}, err
	}
	rep := Report{Config: c.Config, Faults: c.made, Tally: tally(recs, cutoff, received, unmatched), Events: events, PeakRSS: peaks}
	rep.Violations = append(rep.Violations, lost...)
	c.mu.Lock()
	rep.Violations = append(rep.Violations, c.exits...)
	c.mu.Unlock()
	return rep, nil
}

func (c *run) logf(format string, args ...any) {
	el := time.Duration(0)
	if !c.start.IsZero() {
		el = time.Since(c.start).Round(time.Second)
	}
	c.logMu.Lock()
	defer c.logMu.Unlock()
	fmt.Fprintf(c.Progress, "chaos: %d:%02d "+format+"\n", append([]any{int(el.Minutes()), int(el.Seconds()) % 60}, args...)...)
}

// booking is booking i, made at at: its consent falls due at once, its
// end-of-treatment text between lead after booking and the end of the
// window.
func (c *run) booking(i int, at time.Time) aftercare.Booking {
	end := c.start.Add(c.Window)
	spread := end.Sub(at) - c.lead()
	frac := float64((i*7919)%c.Bookings) / float64(c.Bookings) // spread evenly, not in booking order
	return aftercare.Booking{
		ID: bookingID(i), Treatment: "botox",
		AppointmentAt: at.Add(c.lead() + time.Duration(frac*float64(spread))).Truncate(time.Millisecond),
		Patient: aftercare.Patient{FirstName: "Ana", Phone: fmt.Sprintf("+1555%07d", i), Email: fmt.Sprintf("p%05d@example.com", i),
			Timezone: "UTC", SMSOptIn: true, EmailOptIn: true},
	}
}

func bookingID(i int) string { return fmt.Sprintf("chaos_%05d", i) }

// book makes the bookings at an even pace over the first half of the
// window, as a clinic backend would: a booking that fails (Redis is
// restarting) is posted again until it succeeds, which must neither lose nor
// double a message.
func (c *run) book(ctx context.Context, sched *scheduler.Client) error {
	pace := c.Window / 2 / time.Duration(c.Bookings)
	var (
		next    atomic.Int64
		retries atomic.Int64
		wg      sync.WaitGroup
		errs    = make(chan error, 4)
	)
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= c.Bookings {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(c.start.Add(time.Duration(i) * pace))):
				}
				b := c.booking(i, time.Now())
				for try := 0; ; try++ {
					_, _, err := sched.Book(context.WithoutCancel(ctx), b)
					if err == nil {
						break
					}
					if code := aftercare.ErrorCode(err); code == aftercare.EINVALID || code == aftercare.ECONFLICT || try == 300 {
						errs <- fmt.Errorf("book %s: %w", b.ID, err)
						return
					}
					retries.Add(1)
					time.Sleep(200 * time.Millisecond) // Redis is away: post again, as a backend would
				}
				c.booked.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	if r := retries.Load(); r > 0 {
		c.logf("bookings: %d posted; %d attempts failed while Redis was away and were posted again", c.booked.Load(), r)
	}
	return <-errs
}

// wait polls the records until every message due by cutoff has a final
// status, or Settle passes, and returns the records.
func (c *run) wait(ctx context.Context, store *redisstore.Store, cutoff time.Time) ([]*aftercare.Record, error) {
	c.logf("faults stopped; waiting up to %s for every due message to reach a final status", c.Settle)
	deadline := time.Now().Add(c.Settle)
	lastLog := time.Now()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		recs := make([]*aftercare.Record, 0, c.Bookings)
		open := 0
		for i := range c.Bookings {
			rec, err := store.Get(ctx, bookingID(i))
			if err != nil {
				return nil, err
			}
			recs = append(recs, rec)
			for _, m := range rec.Messages {
				if !m.SendAt.After(cutoff) && !m.Status.Final() {
					open++
				}
			}
		}
		if open == 0 || time.Now().After(deadline) {
			return recs, nil
		}
		if time.Since(lastLog) >= 10*time.Second {
			c.logf("%d due messages not final yet (retries, or leases of killed workers running out)", open)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-poll.C:
		}
	}
}

// renderer renders messages as the workers do: their consent links are
// made from the same settings.
func (c *run) renderer(clinic aftercare.Clinic, protocols map[string]aftercare.Protocol) (*messages.Renderer, error) {
	cfg, err := config.Load(func(name string) (string, bool) {
		for _, kv := range c.env {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				return v, true
			}
		}
		return "", false
	})
	if err != nil {
		return nil, err
	}
	links, err := consent.NewLinks(cfg.PublicBase(), cfg.DataKeys)
	if err != nil {
		return nil, err
	}
	return messages.New(clinic, protocols, messages.Links(links))
}
