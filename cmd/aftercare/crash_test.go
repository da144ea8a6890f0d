package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/internal/smtptest"
	"github.com/aftercare/aftercare/internal/twiliotest"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

// serveEnv, when set, makes the test binary run "aftercare serve" instead
// of the tests, as the command does (main's cli): the crash test starts
// workers as real processes that way, and the start-up test watches them
// fail.
const serveEnv = "AFTERCARE_TEST_SERVE"

// cliEnv, when set, makes the test binary the aftercare command with the
// arguments it was given: the README test runs the README's commands so.
const cliEnv = "AFTERCARE_TEST_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(cli(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
	}
	if os.Getenv(serveEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli(ctx, []string{"serve"}, os.LookupEnv, io.Discard, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// startWorker runs the service in a separate process with env.
func startWorker(t *testing.T, env []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, serveEnv+"=1")...)
	logs, err := os.Create(filepath.Join(t.TempDir(), "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			data, _ := os.ReadFile(logs.Name())
			t.Logf("worker log:\n%s", data)
		}
	})
	return cmd
}

// processBundle is what a test of worker processes needs: a private Redis,
// a fake Twilio, a scheduler in the test process to book with, and the
// settings for the processes.
type processBundle struct {
	twilio *twiliotest.Server
	rdb    *redis.Client
	sched  *scheduler.Client
	env    []string
}

func setupProcesses(t *testing.T, extra ...string) *processBundle {
	t.Helper()
	tw := twiliotest.New(accountSID, authToken)
	t.Cleanup(tw.Close)
	redisAddr := redistest.Addr(t)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { rdb.Close() })
	clinicFile := writeClinic(t)
	clinic, err := config.LoadClinic(clinicFile)
	if err != nil {
		t.Fatal(err)
	}
	protocols, err := protocol.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	return &processBundle{
		twilio: tw,
		rdb:    rdb,
		sched:  scheduler.New(redisstore.New(rdb), taskqueue.New(rdb), scheduler.Config{Protocols: protocols, Clinic: clinic}),
		env: append([]string{
			"REDIS_URL=redis://" + redisAddr, "HTTP_ADDR=127.0.0.1:0", "AFTERCARE_API_TOKENS=x",
			"TWILIO_ACCOUNT_SID=" + accountSID, "TWILIO_AUTH_TOKEN=" + authToken, "TWILIO_FROM_NUMBER=+15555550100",
			"TWILIO_API_BASE_URL=" + tw.URL(), "AFTERCARE_CLINIC_FILE=" + clinicFile, "AFTERCARE_OUTBOX_FILE=",
			"LOG_FORMAT=json",
		}, extra...),
	}
}

// TestWorkerKilledMidSend kills a worker process with SIGKILL while Twilio
// is slow to answer, starts another, and checks the promise of the README:
// every message reaches its provider at most once; a text the dead worker
// had in flight is settled by asking Twilio (which never got it: the fake
// holds such requests before taking them) and sent once; an email in
// flight is recorded outcome_unknown, never sent twice. asynq hands a dead worker's tasks on after
// their lease runs out, so this test takes about a minute and a half.
func TestWorkerKilledMidSend(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for asynq's lease to expire")
	}
	t.Parallel()
	mail, err := smtptest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mail.Close() })
	pb := setupProcesses(t, "SMTP_URL="+mail.URL(), "MAIL_FROM=care@clinic.example",
		"SMS_RATE_LIMIT=0", "EMAIL_RATE_LIMIT=0", "WORKER_CONCURRENCY=8")
	tw, rdb, sched := pb.twilio, pb.rdb, pb.sched
	const n = 12
	for i := range n {
		b := aftercare.Booking{ID: fmt.Sprintf("bk_crash_%02d", i), Treatment: "botox",
			AppointmentAt: time.Now().Add(72 * time.Hour), DurationMinutes: 30,
			Patient: aftercare.Patient{FirstName: "Ana", Phone: fmt.Sprintf("+1555555%04d", 100+i), Email: fmt.Sprintf("p%02d@example.com", i),
				Timezone: "UTC", SMSOptIn: true, EmailOptIn: true}}
		if _, _, err := sched.Book(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}

	env := pb.env
	tw.SetDelay(time.Hour) // Twilio takes the requests and does not answer
	first := startWorker(t, env)
	waitFor(t, time.Minute, func() bool { return tw.Requests() >= 4 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	inFlight := tw.Requests()
	t.Logf("killed the first worker with %d SMS requests in flight and %d emails delivered", inFlight, len(mail.Messages()))

	tw.SetDelay(0)
	startWorker(t, env)
	rec := redisstore.New(rdb)
	var final map[string]*aftercare.Record
	waitFor(t, 150*time.Second, func() bool {
		final = map[string]*aftercare.Record{}
		for i := range n {
			r, err := rec.Get(context.Background(), fmt.Sprintf("bk_crash_%02d", i))
			if err != nil {
				t.Fatal(err)
			}
			final[r.ID] = r
			for _, ch := range []aftercare.Channel{aftercare.SMS, aftercare.Email} {
				if m, _ := r.Message("consent", ch); !m.Status.Final() {
					return false
				}
			}
		}
		return true
	})

	smsTo := map[string]int{}
	for _, m := range tw.Messages() {
		smsTo[m.To]++
	}
	emailsTo := map[string]int{}
	for _, m := range mail.Messages() {
		emailsTo[m.To[0]]++
	}
	var sent, resolved, uncertainEmails int
	for _, r := range final {
		phone, email := r.Booking.Patient.Phone, r.Booking.Patient.Email
		sms, _ := r.Message("consent", aftercare.SMS)
		switch {
		case smsTo[phone] > 1:
			t.Errorf("%s: %d consent texts", r.ID, smsTo[phone])
		case sms.Status == aftercare.StatusSent && smsTo[phone] == 1:
			sent++
			if slices.ContainsFunc(r.History, func(a aftercare.Event) bool { return a.Channel == aftercare.SMS && a.Asked }) {
				resolved++
			}
		default:
			t.Errorf("%s: consent SMS %s (%q) with %d texts received", r.ID, sms.Status, sms.Error, smsTo[phone])
		}
		m, _ := r.Message("consent", aftercare.Email)
		switch n := emailsTo[email]; {
		case m.Status == aftercare.StatusSent && n == 1:
		case m.Status == aftercare.StatusOutcomeUnknown && n <= 1:
			uncertainEmails++
		default:
			t.Errorf("%s: consent email %s (%q), received %d times", r.ID, m.Status, m.Error, n)
		}
	}
	t.Logf("SMS: %d sent once, %d of them in flight when the worker died and sent once Twilio was found never to have had them, 0 twice; emails: %d received, each once, %d outcome unknown",
		sent, resolved, len(mail.Messages()), uncertainEmails)
	if resolved == 0 {
		t.Error("no SMS was caught in flight: the crash did not test the text in doubt")
	}
}

// TestGracefulShutdown sends SIGTERM to a worker process while Twilio is
// still answering a send: the process lets the send finish, records it,
// and exits 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	pb := setupProcesses(t, "SHUTDOWN_TIMEOUT=10s")
	tw, rdb, sched := pb.twilio, pb.rdb, pb.sched
	b := aftercare.Booking{ID: "bk_term", Treatment: "botox", AppointmentAt: time.Now().Add(72 * time.Hour), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: patientTel, Timezone: "UTC", SMSOptIn: true}}
	if _, _, err := sched.Book(context.Background(), b); err != nil {
		t.Fatal(err)
	}

	tw.SetDelay(2 * time.Second)
	proc := startWorker(t, pb.env)
	waitFor(t, time.Minute, func() bool { return tw.Requests() >= 1 })
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("process exited with %v, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the process did not exit within 20 s of SIGTERM")
	}
	if n := len(tw.Messages()); n != 1 {
		t.Fatalf("Twilio took %d messages, want the one in flight", n)
	}
	rec, err := redisstore.New(rdb).Get(context.Background(), "bk_term")
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := rec.Message("consent", aftercare.SMS); m.Status != aftercare.StatusSent {
		t.Errorf("consent SMS = %s after a graceful stop, want sent", m.Status)
	}
}
