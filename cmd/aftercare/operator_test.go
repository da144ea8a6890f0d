package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/internal/redisproc"
)

func (tb *testBundle) get(t *testing.T, path, user, password string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", tb.url+path, nil)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestOperatorEndpoints: metrics, the dashboard behind its password, and
// neither shows patient data.
func TestOperatorEndpoints(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_ops", time.Now().Add(48*time.Hour)), 201)
	tb.waitStatus(t, "bk_ops", "consent", "sms", "sent")
	tb.waitStatus(t, "bk_ops", "consent", "email", "sent")

	// A send is counted right after its status is stored: wait for both.
	wants := []string{
		`aftercare_messages_total{channel="sms",outcome="sent",step="consent"} 1`,
		`aftercare_provider_call_seconds_count{channel="sms"} 1`,
		`aftercare_send_lateness_seconds_count{channel="email"} 1`,
		`aftercare_queue_tasks{queue="sms",state="scheduled"}`,
		`aftercare_queue_latency_seconds{queue="email"}`,
	}
	var body string
	waitFor(t, time.Minute, func() bool {
		var status int
		if status, body = tb.get(t, "/metrics", "", ""); status != 200 {
			t.Fatalf("/metrics = %d", status)
		}
		for _, want := range wants {
			if !strings.Contains(body, want) {
				return false
			}
		}
		return true
	})

	if status, _ := tb.get(t, "/monitoring/", "", ""); status != 401 {
		t.Errorf("dashboard without a password = %d, want 401", status)
	}
	if status, _ := tb.get(t, "/monitoring/", "ops", "wrong"); status != 401 {
		t.Errorf("dashboard with a wrong password = %d, want 401", status)
	}
	status, page := tb.get(t, "/monitoring/", "ops", "ops-secret")
	if status != 200 || !strings.Contains(page, "<html") {
		t.Errorf("dashboard = %d", status)
	}
	status, tasks := tb.get(t, "/monitoring/api/queues/sms/scheduled_tasks", "ops", "ops-secret")
	if status != 200 || !strings.Contains(tasks, "booking bk_ops v1, day1 by sms") {
		t.Errorf("scheduled tasks = %d %s", status, tasks)
	}
	for _, secret := range []string{patientTel, "5555550123", patientTo} {
		if strings.Contains(body, secret) || strings.Contains(tasks, secret) {
			t.Errorf("metrics or dashboard show %q", secret)
		}
	}
}

// TestRoles: an API process and two worker processes on one Redis share
// the work: the API takes the bookings, the workers send each message once
// between them.
func TestRoles(t *testing.T) {
	t.Parallel()
	apiOnly := start(t, config.RoleAPI, "")
	// Two sends at a time each, and a Twilio that takes 100 ms a message:
	// neither worker can take all the work.
	workers := []*testBundle{
		start(t, config.RoleWorker, "redis://"+apiOnly.redisAddr, "WORKER_CONCURRENCY=2"),
		start(t, config.RoleWorker, "redis://"+apiOnly.redisAddr, "WORKER_CONCURRENCY=2"),
	}
	for _, w := range workers {
		w.twilio.SetDelay(100 * time.Millisecond)
	}
	const n = 10
	for i := range n {
		body := bookingBody(fmt.Sprintf("bk_roles_%d", i), time.Now().Add(48*time.Hour))
		body["patient"].(map[string]any)["phone"] = fmt.Sprintf("+1555555%04d", 200+i)
		apiOnly.mustRequest(t, "POST", "/v1/bookings", body, 201)
	}
	texts := map[string]int{}
	count := func() {
		clear(texts)
		for _, w := range workers {
			for _, m := range w.twilio.Messages() {
				texts[m.To]++
			}
		}
	}
	waitFor(t, time.Minute, func() bool { count(); return len(texts) == n })
	apiOnly.waitIdle(t)
	count()
	total := 0
	for to, c := range texts {
		total += c
		if c != 1 {
			t.Errorf("%s got %d texts", to, c)
		}
	}
	first, second := len(workers[0].twilio.Messages()), len(workers[1].twilio.Messages())
	t.Logf("worker 1 sent %d, worker 2 sent %d of %d texts", first, second, total)
	if first == 0 || second == 0 {
		t.Errorf("one worker did all the work (%d and %d)", first, second)
	}
	if n := len(apiOnly.twilio.Messages()); n != 0 {
		t.Errorf("the API process sent %d SMS", n)
	}
	if status, _ := workers[0].get(t, "/v1/bookings/bk_roles_0", "", ""); status != 404 {
		t.Errorf("a worker process serves the API: %d", status)
	}
	if status, _ := workers[0].get(t, "/readyz", "", ""); status != 200 {
		t.Errorf("worker /readyz = %d", status)
	}
}

// TestSentinelAndCluster runs the booking flow on a Sentinel-managed
// primary and on a three-master Redis Cluster, both started here from the
// installed redis-server.
func TestSentinelAndCluster(t *testing.T) {
	t.Parallel()
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		addr, stop, err := redisproc.StartSentinel(t.TempDir())
		if err != nil {
			skipOutsideCI(t, "cannot start a sentinel here: %v", err)
		}
		t.Cleanup(stop)
		flow(t, start(t, config.RoleAll, "redis-sentinel://"+addr+"/aftercare"))
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		addrs, stop, err := redisproc.StartCluster(t.TempDir())
		if err != nil {
			skipOutsideCI(t, "cannot start a cluster here: %v", err)
		}
		t.Cleanup(stop)
		flow(t, start(t, config.RoleAll, "redis-cluster://"+strings.Join(addrs, ",")))
	})
}

// flow books, reschedules and cancels, and checks what was sent.
func flow(t *testing.T, tb *testBundle) {
	t.Helper()
	appt := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_ha", appt), 201)
	tb.waitStatus(t, "bk_ha", "consent", "sms", "sent")
	tb.waitStatus(t, "bk_ha", "consent", "email", "sent")
	if tl := tb.mustRequest(t, "PUT", "/v1/bookings/bk_ha", bookingBody("bk_ha", appt.Add(24*time.Hour)), 200); tl.Version != 2 {
		t.Errorf("version after PUT = %d", tl.Version)
	}
	if tl := tb.mustRequest(t, "DELETE", "/v1/bookings/bk_ha", nil, 200); tl.Status != "cancelled" {
		t.Errorf("status after DELETE = %s", tl.Status)
	}
	if status, body := tb.get(t, "/monitoring/api/queues", "ops", "ops-secret"); status != 200 || !strings.Contains(body, `"sms"`) {
		t.Errorf("dashboard queues = %d %s", status, body)
	}
	if n := len(tb.twilio.Messages()); n != 1 {
		t.Errorf("%d SMS, want the consent only", n)
	}
}

// skipOutsideCI skips a test that needs something this machine lacks, but
// fails it in CI, where .ci/run installs everything.
func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
