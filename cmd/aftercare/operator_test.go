package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare/config"
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

	status, body := tb.get(t, "/metrics", "", "")
	if status != 200 {
		t.Fatalf("/metrics = %d", status)
	}
	for _, want := range []string{
		`aftercare_messages_total{channel="sms",outcome="sent",step="consent"} 1`,
		`aftercare_provider_call_seconds_count{channel="sms"} 1`,
		`aftercare_send_lateness_seconds_count{channel="email"} 1`,
		`aftercare_queue_tasks{queue="sms",state="scheduled"}`,
		`aftercare_queue_latency_seconds{queue="email"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

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

// TestRoles: an API process and a worker process on one Redis share the
// work: the API takes the booking, the worker sends it.
func TestRoles(t *testing.T) {
	t.Parallel()
	apiOnly := start(t, config.RoleAPI, "")
	worker := start(t, config.RoleWorker, apiOnly.redisAddr)

	apiOnly.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_roles", time.Now().Add(48*time.Hour)), 201)
	if _, ok := worker.twilio.Wait(1, 5*time.Second); !ok {
		t.Fatal("the worker process sent nothing")
	}
	if n := len(apiOnly.twilio.Messages()); n != 0 {
		t.Errorf("the API process sent %d SMS", n)
	}
	if status, _ := worker.get(t, "/v1/bookings/bk_roles", "", ""); status != 404 {
		t.Errorf("the worker process serves the API: %d", status)
	}
	if status, _ := worker.get(t, "/readyz", "", ""); status != 200 {
		t.Errorf("worker /readyz = %d", status)
	}
}
