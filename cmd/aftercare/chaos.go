package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/internal/redisproc"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/smtp"
)

// chaos books appointments whose messages fall due over a few minutes, runs
// worker processes against a private redis-server, a fake Twilio and an
// SMTP server, breaks them at random, and then checks every message against
// what the providers received.
type chaos struct {
	bookings    int
	workers     int
	concurrency int
	window      time.Duration
	every       time.Duration
	settle      time.Duration
	seed        uint64
	keep        bool
	crashRedis  bool
	fsync       string
	progress    io.Writer

	exe    string // this binary, started as "serve --role worker"
	dir    string
	redis  *redisproc.Server
	rdb    *redis.Client
	twilio *twiliotest.Server
	mail   *smtptest.Server
	env    []string
	rng    *rand.Rand
	start  time.Time

	mu      sync.Mutex
	procs   []*workerProc // live workers
	started int
	exits   []string // workers that exited on their own
	faults  map[string]int
	booked  atomic.Int64
}

// workerProc is one worker process started by the chaos run.
type workerProc struct {
	n      int
	cmd    *exec.Cmd
	killed atomic.Bool // by the chaos run, on purpose
	done   chan struct{}
	err    error // once done is closed
}

const (
	chaosFrom   = "care@chaos.example"
	chaosClinic = "name: Chaos Clinic\nphone: \"+1 555 555 0199\"\naddress: 1 Test Street\ntimezone: UTC\n"
)

func chaosCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &chaos{progress: stderr, faults: map[string]int{}}
	fs.IntVar(&c.bookings, "bookings", 2000, "appointments to book; each has an SMS and an email consent and an SMS at the end of treatment due in the window")
	fs.IntVar(&c.workers, "workers", 3, "worker processes")
	fs.IntVar(&c.concurrency, "concurrency", 10, "sends in flight per worker process")
	fs.DurationVar(&c.window, "window", 3*time.Minute, "how long bookings come in and messages fall due, with faults throughout (at least 1m)")
	fs.DurationVar(&c.every, "every", 10*time.Second, "mean time between faults")
	fs.DurationVar(&c.settle, "settle", 4*time.Minute, "how long to wait after the window for every due message to reach a final status")
	fs.Uint64Var(&c.seed, "seed", 0, "seed for the choice and timing of faults; 0 picks one (printed, to replay a run)")
	fs.BoolVar(&c.crashRedis, "crash-redis", false, "restart redis-server with SIGKILL, a crash, instead of a clean shutdown: it loses the writes --fsync had not synced")
	fs.StringVar(&c.fsync, "fsync", "everysec", "Redis appendfsync policy: everysec or always")
	fs.BoolVar(&c.keep, "keep", false, "keep the Redis data and worker logs (they are kept anyway if the run fails)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: aftercare chaos [flags]

Books appointments whose messages fall due over --window, runs --workers
"aftercare serve --role worker" processes against a private redis-server (AOF
on), a fake Twilio and an SMTP server, and at random:
kills a worker with SIGKILL and starts another, restarts redis-server, makes
Twilio answer 500 or 429 or take a text without answering, and makes the SMTP
server refuse. Then it counts what each provider received per message and
exits 1 if a message went out twice, was recorded sent but never arrived, or
was left without a final status. Needs redis-server on PATH.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.bookings < 1 || c.workers < 1 || c.concurrency < 1 || c.every <= 0 {
		return errors.New("chaos: --bookings, --workers, --concurrency and --every must be positive")
	}
	if c.window < time.Minute {
		return errors.New("chaos: --window must be at least 1m: messages fall due from 15 s after booking")
	}
	if c.fsync != "everysec" && c.fsync != "always" {
		return fmt.Errorf("chaos: --fsync %q: use everysec or always", c.fsync)
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	c.rng = rand.New(rand.NewPCG(c.seed, c.seed>>1))

	var err error
	if c.exe, err = os.Executable(); err != nil {
		return err
	}
	if c.dir, err = os.MkdirTemp("", "aftercare-chaos-"); err != nil {
		return err
	}
	failed := true
	defer func() {
		if failed || c.keep {
			fmt.Fprintf(stderr, "chaos: Redis data and worker logs kept in %s\n", c.dir)
			return
		}
		os.RemoveAll(c.dir)
	}()
	if c.redis, err = redisproc.StartServer(c.dir, "--appendonly", "yes", "--appendfsync", c.fsync); err != nil {
		return fmt.Errorf("chaos needs redis-server: %w", err)
	}
	defer c.redis.Stop()
	c.rdb = redis.NewClient(&redis.Options{Addr: c.redis.Addr})
	defer c.rdb.Close()
	c.twilio = twiliotest.New(fakeAccountSID, fakeAuthToken)
	defer c.twilio.Close()
	if c.mail, err = smtptest.New(); err != nil {
		return err
	}
	defer c.mail.Close()

	clinicFile := filepath.Join(c.dir, "clinic.yaml")
	if err := os.WriteFile(clinicFile, []byte(chaosClinic), 0o600); err != nil {
		return err
	}
	c.env = []string{
		"AFTERCARE_ENV=development", "REDIS_URL=redis://" + c.redis.Addr, "HTTP_ADDR=127.0.0.1:0",
		"AFTERCARE_API_TOKENS=chaos", "AFTERCARE_DATA_KEY=", "AFTERCARE_PROTOCOLS_DIR=",
		"TWILIO_ACCOUNT_SID=" + fakeAccountSID, "TWILIO_AUTH_TOKEN=" + fakeAuthToken, "TWILIO_FROM_NUMBER=+15555550100",
		"TWILIO_MESSAGING_SERVICE_SID=", "TWILIO_API_BASE_URL=" + c.twilio.URL(), "AFTERCARE_PUBLIC_URL=",
		"SMTP_URL=" + c.mail.URL(), "MAIL_FROM=" + chaosFrom,
		"AFTERCARE_CLINIC_FILE=" + clinicFile, "AFTERCARE_OUTBOX_FILE=", "LOG_FORMAT=json",
		"SMS_RATE_LIMIT=100", "EMAIL_RATE_LIMIT=50", fmt.Sprintf("WORKER_CONCURRENCY=%d", c.concurrency),
		"SHUTDOWN_TIMEOUT=15s",
	}
	clinic, err := config.LoadClinic(clinicFile)
	if err != nil {
		return err
	}
	protocols, err := protocol.Builtin()
	if err != nil {
		return err
	}
	store := redisstore.New(c.rdb)
	sched := scheduler.New(store, scheduler.AsynqTasks(c.rdb), scheduler.Config{Protocols: protocols, Clinic: clinic})

	fmt.Fprintf(stderr, "chaos: seed %d: %d bookings over %s, %d workers, a fault every %s on average\n",
		c.seed, c.bookings, c.window/2, c.workers, c.every)
	c.start = time.Now()
	for range c.workers {
		if err := c.startWorker(); err != nil {
			return err
		}
	}
	defer c.stopWorkers()

	runCtx, cancel := context.WithTimeout(ctx, c.window)
	defer cancel()
	booked := make(chan error, 1)
	go func() { booked <- c.book(runCtx, sched) }()
	if err := c.breakThings(runCtx); err != nil {
		return err
	}
	if err := <-booked; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.twilio.SetStall(0)
	// Replace any worker lost to a fault at the very end, then wait.
	for len(c.live()) < c.workers {
		if err := c.startWorker(); err != nil {
			return err
		}
	}
	cutoff := time.Now()
	recs, err := c.wait(ctx, store, cutoff)
	if err != nil {
		return err
	}
	var peaks []string
	for _, p := range c.live() {
		peaks = append(peaks, fmt.Sprintf("worker %d: %s", p.n, procStatus(strconv.Itoa(p.cmd.Process.Pid), "VmHWM")))
	}
	exits := c.stopWorkers()

	renderer, err := messages.New(clinic, protocols)
	if err != nil {
		return err
	}
	received, unmatched, err := matchReceived(recs, renderer, c.twilio.Messages(), c.mail.Messages())
	if err != nil {
		return err
	}
	t := tallyRun(recs, cutoff, received, unmatched)
	t.violations = append(t.violations, exits...)
	c.report(stdout, t, peaks)
	if len(t.violations) > 0 {
		return fmt.Errorf("chaos: %d problems (the first are listed above)", len(t.violations))
	}
	failed = false
	return nil
}

func (c *chaos) logf(format string, args ...any) {
	el := time.Since(c.start).Round(time.Second)
	fmt.Fprintf(c.progress, "chaos: %d:%02d "+format+"\n", append([]any{int(el.Minutes()), int(el.Seconds()) % 60}, args...)...)
}

// startWorker starts one more worker process, logging to its own file.
func (c *chaos) startWorker() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started++
	n := c.started
	logs, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("worker-%d.log", n)))
	if err != nil {
		return err
	}
	cmd := exec.Command(c.exe, "serve", "--role", "worker")
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		logs.Close()
		return fmt.Errorf("start worker %d: %w", n, err)
	}
	p := &workerProc{n: n, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logs.Close()
		close(p.done)
		if !p.killed.Load() {
			c.mu.Lock()
			c.exits = append(c.exits, fmt.Sprintf("worker %d exited on its own (%v); see worker-%d.log", n, p.err, n))
			c.procs = slices.DeleteFunc(c.procs, func(q *workerProc) bool { return q == p })
			c.mu.Unlock()
		}
	}()
	c.procs = append(c.procs, p)
	return nil
}

func (c *chaos) live() []*workerProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.procs)
}

// stopWorkers sends SIGTERM to every live worker, waits for them, and
// returns a line for each that did not exit cleanly (a race report from a
// -race build exits 66, for one).
func (c *chaos) stopWorkers() []string {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	var bad []string
	for _, p := range procs {
		p.killed.Store(true)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if p.err != nil {
			bad = append(bad, fmt.Sprintf("worker %d did not stop cleanly on SIGTERM (%v); see worker-%d.log", p.n, p.err, p.n))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(bad, c.exits...)
}

// chaosBooking is booking i, made at at: its consent falls due at once, its
// end-of-treatment text between 15 s after booking and the end of the
// window.
func (c *chaos) chaosBooking(i int, at time.Time) aftercare.Booking {
	end := c.start.Add(c.window)
	spread := end.Sub(at) - 15*time.Second
	frac := float64((i*7919)%c.bookings) / float64(c.bookings) // spread evenly, not in booking order
	return aftercare.Booking{
		ID: fmt.Sprintf("chaos_%05d", i), Treatment: "botox",
		AppointmentAt: at.Add(15*time.Second + time.Duration(frac*float64(spread))).Truncate(time.Millisecond),
		Patient: aftercare.Patient{FirstName: "Ana", Phone: fmt.Sprintf("+1555%07d", i), Email: fmt.Sprintf("p%05d@example.com", i),
			Timezone: "UTC", SMSOptIn: true, EmailOptIn: true},
	}
}

// book makes the bookings at an even pace over the first half of the
// window, as a clinic backend would: a booking that fails (Redis is
// restarting) is posted again until it succeeds, which must neither lose nor
// double a message.
func (c *chaos) book(ctx context.Context, sched *scheduler.Client) error {
	pace := c.window / 2 / time.Duration(c.bookings)
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
				if i >= c.bookings {
					return
				}
				at := c.start.Add(time.Duration(i) * pace)
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				b := c.chaosBooking(i, time.Now())
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
					time.Sleep(200 * time.Millisecond)
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

// breakThings injects a random fault every c.every on average until ctx
// ends, with a progress line every 10 s.
func (c *chaos) breakThings(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	after := func() <-chan time.Time { return time.After(time.Duration((0.5 + c.rng.Float64()) * float64(c.every))) }
	next := after()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			c.logf("booked %d/%d; Twilio took %d texts, SMTP %d emails; %d workers up",
				c.booked.Load(), c.bookings, len(c.twilio.Messages()), len(c.mail.Messages()), len(c.live()))
			continue
		case <-next:
			next = after()
		}
		f := chaosFaults[c.rng.IntN(len(chaosFaults))]
		what, err := f.do(c)
		if err != nil {
			return fmt.Errorf("fault %s: %w", f.name, err)
		}
		c.mu.Lock()
		c.faults[f.name]++
		c.mu.Unlock()
		c.logf("%s: %s", f.name, what)
	}
}

// chaosFaults are the faults a chaos run picks from, each returning what it
// did.
var chaosFaults = []struct {
	name string
	do   func(c *chaos) (string, error)
}{
	{"kill-worker", func(c *chaos) (string, error) {
		procs := c.live()
		if len(procs) == 0 {
			return "no worker up", c.startWorker()
		}
		p := procs[c.rng.IntN(len(procs))]
		p.killed.Store(true)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			return "", err
		}
		<-p.done
		c.mu.Lock()
		c.procs = slices.DeleteFunc(c.procs, func(q *workerProc) bool { return q == p })
		c.mu.Unlock()
		if err := c.startWorker(); err != nil {
			return "", err
		}
		return fmt.Sprintf("SIGKILL to worker %d (pid %d) and started another", p.n, p.cmd.Process.Pid), nil
	}},
	{"restart-redis", func(c *chaos) (string, error) {
		start := time.Now()
		sig, how := os.Signal(syscall.SIGTERM), "shut down"
		if c.crashRedis {
			sig, how = syscall.SIGKILL, "killed with SIGKILL"
		}
		if err := c.redis.Restart(sig); err != nil {
			return "", err
		}
		return fmt.Sprintf("redis-server %s and back, its AOF loaded, in %s", how, time.Since(start).Round(time.Millisecond)), nil
	}},
	{"twilio-500", func(c *chaos) (string, error) {
		c.twilio.Fail(20, 500, 20500, "Internal Server Error")
		return "Twilio answers the next 20 texts with HTTP 500", nil
	}},
	{"twilio-429", func(c *chaos) (string, error) {
		c.twilio.Fail(20, 429, 20429, "Too Many Requests")
		return "Twilio answers the next 20 texts with HTTP 429", nil
	}},
	{"twilio-stall", func(c *chaos) (string, error) {
		// Longer than the sender's 10 s timeout: the texts go out and the
		// workers never hear so.
		c.twilio.SetStall(15 * time.Second)
		time.AfterFunc(3*time.Second, func() { c.twilio.SetStall(0) })
		return "for 3 s Twilio takes each text and answers 15 s later, after the sender gave up", nil
	}},
	{"smtp-refuse", func(c *chaos) (string, error) {
		c.mail.Reject(30, "MAIL", 421, "4.3.2 Service not available, try again later")
		return "the SMTP server refuses the next 30 emails with 421", nil
	}},
}

// wait polls the records until every message due by cutoff has a final
// status, or c.settle passes, and returns the records.
func (c *chaos) wait(ctx context.Context, store *redisstore.Store, cutoff time.Time) ([]*aftercare.Record, error) {
	c.logf("faults stopped; waiting up to %s for every due message to reach a final status", c.settle)
	deadline := time.Now().Add(c.settle)
	lastLog := time.Now()
	for {
		recs := make([]*aftercare.Record, 0, c.bookings)
		open := 0
		for i := range c.bookings {
			rec, err := store.Get(ctx, fmt.Sprintf("chaos_%05d", i))
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
		case <-time.After(time.Second):
		}
	}
}

// msgKey names one message of one booking.
type msgKey struct {
	booking, step string
	channel       aftercare.Channel
}

func (k msgKey) String() string { return k.booking + ":" + k.step + ":" + string(k.channel) }

// matchReceived counts how often each message reached its provider: a text
// by its number and body (rendered again, with and without the opt-out line
// of a booking's first text), an email by its Message-ID. unmatched counts
// what the providers received that belongs to no message.
func matchReceived(recs []*aftercare.Record, r *messages.Renderer, texts []twiliotest.Message, emails []smtptest.Message) (map[msgKey]int, int, error) {
	_, domain, _ := strings.Cut(chaosFrom, "@")
	bySMS := map[[2]string]msgKey{}
	byMessageID := map[string]msgKey{}
	for _, rec := range recs {
		for _, m := range rec.Messages {
			k := msgKey{rec.ID, m.Step, m.Channel}
			if m.Channel == aftercare.Email {
				byMessageID["<"+smtp.MessageID(m.Ref(rec.ID, rec.Version).TaskID(), domain)+">"] = k
				continue
			}
			for _, first := range []bool{true, false} {
				out, err := r.Render(&rec.Booking, m.Step, m.Channel, first)
				if err != nil {
					return nil, 0, err
				}
				bySMS[[2]string{rec.Booking.Patient.Phone, out.Text}] = k
			}
		}
	}
	received := map[msgKey]int{}
	unmatched := 0
	for _, t := range texts {
		if k, ok := bySMS[[2]string{t.To, t.Body}]; ok {
			received[k]++
		} else {
			unmatched++
		}
	}
	for _, e := range emails {
		h, err := e.Header()
		if err != nil {
			return nil, 0, err
		}
		if k, ok := byMessageID[h.Get("Message-ID")]; ok {
			received[k]++
		} else {
			unmatched++
		}
	}
	return received, unmatched, nil
}

// chaosTally is the outcome of a chaos run, message by message.
type chaosTally struct {
	due, sentOnce, notDue int
	ended                 map[string]int // other final outcomes: "expired", "failed: outcome unknown", ...
	receivedUnknown       int            // outcome unknown, and the provider did get it
	duplicates, lost      int
	unmatched             int
	violations            []string
}

// tallyRun checks each message of recs against how often its provider
// received it. A message due by cutoff must have been received exactly once
// and be recorded sent, or end failed, expired, skipped or suppressed with
// its reason and not received, or be failed as "outcome unknown" (received
// at most once). Anything a provider received that matches no message is a
// problem too. A message not due yet must still be scheduled and not
// received.
func tallyRun(recs []*aftercare.Record, cutoff time.Time, received map[msgKey]int, unmatched int) chaosTally {
	t := chaosTally{ended: map[string]int{}, unmatched: unmatched}
	if unmatched > 0 {
		t.violations = append(t.violations, fmt.Sprintf("%d messages the providers received belong to no booking's message", unmatched))
	}
	bad := func(k msgKey, format string, args ...any) {
		t.violations = append(t.violations, k.String()+": "+fmt.Sprintf(format, args...))
	}
	for _, rec := range recs {
		for _, m := range rec.Messages {
			k := msgKey{rec.ID, m.Step, m.Channel}
			n := received[k]
			if m.SendAt.After(cutoff) {
				t.notDue++
				if m.Status != aftercare.StatusScheduled || n > 0 {
					bad(k, "not due until %s, yet %s and received %d times", m.SendAt.Format(time.TimeOnly), m.Status, n)
				}
				continue
			}
			t.due++
			reason := m.Error
			if reason == "" {
				reason = m.Note
			}
			unknown := m.Status == aftercare.StatusFailed && strings.HasPrefix(reason, "outcome unknown")
			switch {
			case n > 1:
				t.duplicates++
				bad(k, "received %d times (%s)", n, m.Status)
			case !m.Status.Final():
				t.lost++
				bad(k, "no final status: still %s (%s), received %d times", m.Status, reason, n)
			case m.Status == aftercare.StatusSent || m.Status == aftercare.StatusDelivered:
				if n == 1 {
					t.sentOnce++
				} else {
					t.lost++
					bad(k, "recorded %s but never received", m.Status)
				}
			case unknown:
				t.ended["failed: outcome unknown"]++
				t.receivedUnknown += n
			case reason == "":
				bad(k, "%s with no reason recorded", m.Status)
			case n == 1:
				bad(k, "received, but recorded %s (%s)", m.Status, reason)
			default:
				t.ended[string(m.Status)]++
			}
		}
	}
	return t
}

// report prints the faults and the tally.
func (c *chaos) report(w io.Writer, t chaosTally, peaks []string) {
	var faults []string
	for _, f := range chaosFaults {
		faults = append(faults, fmt.Sprintf("%s %d", f.name, c.faults[f.name]))
	}
	fmt.Fprintf(w, "aftercare chaos: seed %d, %d bookings, %d workers, window %s\nfaults: %s\n\n",
		c.seed, c.bookings, c.workers, c.window, strings.Join(faults, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "messages due\t%d\n", t.due)
	fmt.Fprintf(tw, "  sent, received exactly once\t%d\n", t.sentOnce)
	for _, k := range slices.Sorted(maps.Keys(t.ended)) {
		line := fmt.Sprintf("  %s\t%d", k, t.ended[k])
		if k == "failed: outcome unknown" {
			line += fmt.Sprintf("\t(the provider got %d of them, each once)", t.receivedUnknown)
		}
		fmt.Fprintln(tw, line)
	}
	fmt.Fprintf(tw, "  received more than once\t%d\n", t.duplicates)
	fmt.Fprintf(tw, "  lost: no final status, or recorded sent and never received\t%d\n", t.lost)
	fmt.Fprintf(tw, "not due yet, still scheduled\t%d\n", t.notDue)
	fmt.Fprintf(tw, "received by a provider for no message\t%d\n", t.unmatched)
	fmt.Fprintf(tw, "peak RSS of the workers running at the end\t%s\n", strings.Join(peaks, ", "))
	tw.Flush()
	if len(t.violations) == 0 {
		fmt.Fprintln(w, "\nOK: every due message went out exactly once or ended with its reason; none twice.")
		return
	}
	fmt.Fprintf(w, "\nFAILED: %d problems\n", len(t.violations))
	for _, v := range t.violations[:min(len(t.violations), 20)] {
		fmt.Fprintln(w, "  "+v)
	}
}
