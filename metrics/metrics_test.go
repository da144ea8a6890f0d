package metrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/metrics"
)

type queues struct{}

func (queues) Stats() ([]aftercare.QueueStats, error) {
	return []aftercare.QueueStats{{Queue: aftercare.QueueAlerts, Retry: 1}}, nil
}

type inbox struct{ oldest time.Time }

func (i inbox) InboxStats(context.Context) (aftercare.InboxStats, error) {
	return aftercare.InboxStats{OpenUrgent: 1, OpenNormal: 4, OldestUrgent: i.oldest}, nil
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func TestInboxMetrics(t *testing.T) {
	t.Parallel()
	body := scrape(t, metrics.New(queues{}, inbox{oldest: time.Now().Add(-20 * time.Minute)}))
	for _, want := range []string{`aftercare_inbox_open_items{urgency="urgent"} 1`, `aftercare_inbox_open_items{urgency="normal"} 4`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	age := regexp.MustCompile(`(?m)^aftercare_inbox_oldest_urgent_age_seconds (\S+)`).FindStringSubmatch(body)
	if len(age) != 2 {
		t.Fatalf("no oldest urgent age in\n%s", body)
	}
	if v, err := strconv.ParseFloat(age[1], 64); err != nil || v < 1200 || v > 1260 {
		t.Errorf("oldest urgent age %s, want about 1200 s", age[1])
	}
	if body := scrape(t, metrics.New(nil, inbox{})); !strings.Contains(body, "aftercare_inbox_oldest_urgent_age_seconds 0") {
		t.Error("no open urgent item should read 0")
	}
}

// TestAlertRules: every metric the example alert rules use is one aftercare
// exports.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../deploy/prometheus/aftercare-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(queues{}, inbox{})
	m.Attempt("consent", aftercare.SMS, aftercare.OutcomeSent, time.Second, time.Second)
	exported := scrape(t, m)
	n := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			n++
			for _, name := range regexp.MustCompile(`aftercare_[a-z_]+`).FindAllString(r.Expr, -1) {
				if !strings.Contains(exported, "\n"+name) {
					t.Errorf("rule %s uses %s, which aftercare does not export", r.Alert, name)
				}
			}
		}
	}
	if n == 0 {
		t.Error("no rules read")
	}
}
