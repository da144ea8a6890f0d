package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redisproc"
)

// protocolsDir writes files (name: content) into a new directory.
func protocolsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const extraProtocol = `treatment: peel
title: chemical peel
consent:
  en:
    about: An acid solution that removes the top layer of skin.
    risks: [{name: Redness, text: Common for days., action: Nothing to do.}]
    emergency: Severe pain or blistering needs a doctor at once.
    not_for: [You are pregnant.]
    alternatives: [No treatment at all.]
    aftercare: [Use sun protection.]
steps:
  - step: check_in
    channels: [sms]
    when: {anchor: treatment_end, days: 2, at: "10:00"}
    deadline: {anchor: send, offset: 12h}
`

// serveProcess is "aftercare serve" run as a process of its own, the way
// main runs it (TestMain's serve mode).
type serveProcess struct {
	cmd  *exec.Cmd
	out  *fixture.Buffer // stdout and stderr
	done chan error      // its exit
}

// startServe starts serve on the embedded default (in-memory Redis, console
// outbox, built-in clinic and protocols), whatever the test machine's
// environment says, with env ("NAME=value") on top.
func startServe(t *testing.T, env ...string) *serveProcess {
	t.Helper()
	p := &serveProcess{cmd: exec.Command(os.Args[0], "-test.run=^$"), out: &fixture.Buffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), serveEnv+"=1", "AFTERCARE_ENV=development", "HTTP_ADDR=127.0.0.1:0", "AFTERCARE_OUTBOX_FILE=",
		"REDIS_URL=", "SMTP_URL=", "AFTERCARE_PROTOCOLS_DIR=", "AFTERCARE_CLINIC_FILE=")
	p.cmd.Env = append(p.cmd.Env, env...) // a later value of a name wins
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// exit waits for the process to end, for at most a bound only a process
// that ignores what it was asked reaches, and returns its exit code.
func (p *serveProcess) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &exit):
			return exit.ExitCode()
		}
		t.Fatalf("waiting for the process: %v", err)
	case <-time.After(time.Minute):
		t.Fatalf("still running after a minute:\n%s", p.out.String())
	}
	return -1
}

// TestStartupFailures starts the command, as a process, with each kind of
// setting that cannot work: it exits 1 with one line per problem naming
// the setting and the fix, and never with a trace.
func TestStartupFailures(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  []string
		want []string
	}{
		{"redis down", []string{"REDIS_URL=redis://127.0.0.1:1", "AFTERCARE_REDIS_WAIT=1s"},
			[]string{"REDIS_URL: Redis did not answer in 1s", "AFTERCARE_REDIS_WAIT"}},
		{"redis url without scheme", []string{"REDIS_URL=localhost:6379"}, []string{"REDIS_URL"}},
		{"redis url that does not parse", []string{"REDIS_URL=redis://:s3cret%zz@127.0.0.1:6379"}, []string{"REDIS_URL", "%-encoded"}},
		{"redis url with a password and no scheme", []string{"REDIS_URL=ana:s3cret@redis.internal:6379"}, []string{"REDIS_URL: has no scheme"}},
		{"redis db not a number", []string{"REDIS_URL=redis://127.0.0.1:6379/abc"}, []string{"REDIS_URL"}},
		{"smtp url", []string{"SMTP_URL=smtp://[::1", "MAIL_FROM=care@clinic.example"}, []string{"SMTP_URL"}},
		{"several settings at once", []string{"SMS_RATE_LIMIT=fast", "WORKER_CONCURRENCY=0"}, []string{"SMS_RATE_LIMIT", "WORKER_CONCURRENCY"}},
		{"protocol syntax", []string{"AFTERCARE_PROTOCOLS_DIR=" + protocolsDir(t, map[string]string{"peel.yaml": "treatment: [peel"})},
			[]string{"AFTERCARE_PROTOCOLS_DIR", "peel.yaml"}},
		{"protocol unknown key", []string{"AFTERCARE_PROTOCOLS_DIR=" + protocolsDir(t, map[string]string{
			"peel.yaml": strings.Replace(extraProtocol, "deadline:", "deadlin:", 1)})}, []string{"AFTERCARE_PROTOCOLS_DIR", "deadlin"}},
		{"protocol bad rule", []string{"AFTERCARE_PROTOCOLS_DIR=" + protocolsDir(t, map[string]string{
			"peel.yaml": strings.Replace(extraProtocol, `"10:00"`, `"25:00"`, 1)})}, []string{"AFTERCARE_PROTOCOLS_DIR", "24-hour clock"}},
		{"protocol without templates", []string{"AFTERCARE_PROTOCOLS_DIR=" + protocolsDir(t, map[string]string{"peel.yaml": extraProtocol})},
			[]string{"message templates", "peel.check_in.sms.tmpl"}},
		{"empty protocols dir", []string{"AFTERCARE_PROTOCOLS_DIR=" + t.TempDir()}, []string{"AFTERCARE_PROTOCOLS_DIR", "no protocol files"}},
		{"missing protocols dir", []string{"AFTERCARE_PROTOCOLS_DIR=" + filepath.Join(t.TempDir(), "nope")}, []string{"AFTERCARE_PROTOCOLS_DIR"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := startServe(t, c.env...)
			if code := p.exit(t); code != 1 {
				t.Fatalf("exit code %d, want 1\n%s", code, p.out.String())
			}
			text := p.out.String()
			for _, want := range c.want {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q:\n%s", want, text)
				}
			}
			if strings.Contains(text, "panic") || strings.Contains(text, "goroutine") {
				t.Errorf("a trace:\n%s", text)
			}
			if strings.Contains(text, "s3cret") {
				t.Errorf("the output holds the password:\n%s", text)
			}
			var errLines []string
			for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
				if strings.HasPrefix(line, "aftercare: ") {
					errLines = append(errLines, line)
				}
			}
			if len(errLines) == 0 || len(errLines) < len(c.want)-1 {
				t.Errorf("error lines %q; want one per problem", errLines)
			}
		})
	}
}

// TestSignalWhileWaitingForRedis: a stop signal ends the wait for Redis at
// once, not when the wait runs out.
func TestSignalWhileWaitingForRedis(t *testing.T) {
	t.Parallel()
	p := startServe(t, "REDIS_URL=redis://127.0.0.1:1", "AFTERCARE_REDIS_WAIT=10m")
	waitFor(t, time.Minute, func() bool { return strings.Contains(p.out.String(), "waiting for Redis") })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exit(t); code != 1 || !strings.Contains(p.out.String(), "stopped while waiting for Redis") {
		t.Errorf("exit code %d:\n%s", code, p.out.String())
	}
}

// TestHungRedis: while Redis hangs, a call of the API answers 503 with
// Retry-After within its deadline, not a 500 after go-redis's retries;
// once Redis is back, calls succeed again.
func TestHungRedis(t *testing.T) {
	t.Parallel()
	srv, err := redisproc.StartServer(t.TempDir())
	if err != nil {
		skipOutsideCI(t, "no redis-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	tb := start(t, config.RoleAPI, "redis://"+srv.Addr)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_hung", time.Now().Add(48*time.Hour)), 201)

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := srv.Resume(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume) // before the service stops: it closes its clients
	req, _ := http.NewRequest("GET", tb.url+"/v1/bookings/bk_hung", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	client := &http.Client{Timeout: time.Minute} // a bound only a request without a deadline reaches
	began := time.Now()
	resp, err := client.Do(req)
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "did not answer in time") {
		t.Errorf("GET while Redis hangs = %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// The answer comes at the request's 5 s deadline (the API client's 2 s
	// tries are retried until then); 20 s is what go-redis's retries took.
	t.Logf("503 after %v", took.Round(100*time.Millisecond))
	if took >= 15*time.Second {
		t.Errorf("the 503 came after %v, want it within the request's 5 s deadline", took)
	}
	resume()
	waitFor(t, time.Minute, func() bool {
		status, _ := tb.request(t, "GET", "/v1/bookings/bk_hung", nil)
		return status == 200
	})
}

// TestDrainOnStop: after a stop signal /readyz answers 503 while the
// listener still takes calls, for AFTERCARE_DRAIN_GRACE, so a load balancer
// stops sending before connections are refused; then the process exits 0.
func TestDrainOnStop(t *testing.T) {
	t.Parallel()
	p := startServe(t, "LOG_FORMAT=json", "AFTERCARE_DRAIN_GRACE=3s")
	addr := regexp.MustCompile(`"msg":"aftercare listening","addr":"([^"]+)"`)
	var base string
	waitFor(t, time.Minute, func() bool {
		if m := addr.FindStringSubmatch(p.out.String()); m != nil {
			base = "http://" + m[1]
		}
		return base != ""
	})
	ready := func() (int, error) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	waitFor(t, time.Minute, func() bool { status, _ := ready(); return status == 200 })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, func() bool {
		status, err := ready()
		if err != nil {
			t.Fatalf("the listener closed before /readyz said not ready: %v\n%s", err, p.out.String())
		}
		return status == http.StatusServiceUnavailable
	})
	if code := p.exit(t); code != 0 {
		t.Errorf("exit code %d:\n%s", code, p.out.String())
	}
}
