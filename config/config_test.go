package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aftercare/aftercare/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.Concurrency != 20 || c.SMSRateLimit != 10 || c.EmailRateLimit != 5 || c.Env != config.Development {
		t.Errorf("defaults = %+v", c)
	}
	if !c.DevToken || len(c.APITokens) != 1 || c.APITokens[0] != config.DevToken {
		t.Errorf("development without tokens should accept the dev token: %v", c.APITokens)
	}
	if c.TwilioEnabled() || c.SMTPEnabled() || c.Clinic.Name == "" || c.LogFormat != "text" {
		t.Errorf("defaults = %+v", c)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{"AFTERCARE_API_TOKENS": " a, b ,,"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.APITokens, "|") != "a|b" || c.DevToken {
		t.Errorf("tokens = %q, dev %v", c.APITokens, c.DevToken)
	}
}

// TestProductionTokens: production refuses the development token, and any
// token too short to resist guessing, by its place in the list.
func TestProductionTokens(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", config.MinTokenLength)
	for tokens, want := range map[string]string{
		config.DevToken:            "token 1 is the development token",
		long + ",short-token":      "token 2 has 11 characters",
		long + "," + long + "-two": "",
	} {
		_, err := config.Load(env(map[string]string{"AFTERCARE_ENV": "production", "AFTERCARE_API_TOKENS": tokens}))
		switch {
		case want == "" && err != nil && strings.Contains(err.Error(), "AFTERCARE_API_TOKENS"):
			t.Errorf("%q refused: %v", tokens, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want %q", tokens, err, want)
		}
	}
}

func TestClinicFile(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, src, want string }{
		{"valid", "name: C\nphone: \"1\"\ntimezone: Europe/Madrid\nquiet_hours: {start: \"22:00\", end: \"07:30\"}\n", ""},
		{"unknown key", "name: C\nphone: \"1\"\ntimezone: UTC\ncolour: red\n", "colour"},
		{"no phone", "name: C\ntimezone: UTC\n", "phone is required"},
		{"bad zone", "name: C\nphone: \"1\"\ntimezone: Nowhere/Else\n", "timezone"},
		{"bad quiet", "name: C\nphone: \"1\"\ntimezone: UTC\nquiet_hours: {start: \"9pm\", end: \"08:00\"}\n", "9pm"},
		{"half quiet", "name: C\nphone: \"1\"\ntimezone: UTC\nquiet_hours: {start: \"21:00\"}\n", "both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "clinic.yaml")
			if err := os.WriteFile(path, []byte(tt.src), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := config.Load(env(map[string]string{"AFTERCARE_CLINIC_FILE": path}))
			if tt.want == "" {
				if err != nil || c.Clinic.SenderName != "C" || c.Clinic.QuietHours.End != "07:30" {
					t.Fatalf("Load = %+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "AFTERCARE_CLINIC_FILE") {
				t.Fatalf("Load error = %v, want one naming AFTERCARE_CLINIC_FILE and %q", err, tt.want)
			}
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.Load(env(map[string]string{
		"HTTP_ADDR": ":8080", "WORKER_CONCURRENCY": "0", "AFTERCARE_RETENTION": "forever", "TWILIO_API_BASE_URL": "api.twilio.com",
	}))
	for _, name := range []string{"WORKER_CONCURRENCY", "AFTERCARE_RETENTION", "TWILIO_API_BASE_URL"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

// TestEventEndpoints: one endpoint from the environment, several from a
// file, and each problem named by its setting, endpoint and field.
func TestEventEndpoints(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	c, err := config.Load(env(map[string]string{"AFTERCARE_WEBHOOK_URL": "https://crm.clinic.example/hook", "AFTERCARE_WEBHOOK_SECRET": secret}))
	if err != nil || len(c.Endpoints) != 1 || c.Endpoints[0].Name != "default" || c.EventConcurrency != 10 {
		t.Fatalf("one endpoint: %+v, %v", c, err)
	}
	_, err = config.Load(env(map[string]string{"AFTERCARE_WEBHOOK_URL": "https://crm.clinic.example/hook", "AFTERCARE_WEBHOOK_SECRET": "s3cret"}))
	if err == nil || !strings.Contains(err.Error(), `AFTERCARE_WEBHOOK_URL: endpoint default: secret 1: must start with "whsec_"`) {
		t.Errorf("bad secret: %v", err)
	}
	file := filepath.Join(t.TempDir(), "endpoints.yaml")
	yaml := "endpoints:\n  - name: crm\n    url: https://crm.clinic.example/hook\n    secret: " + secret +
		"\n  - name: on-call\n    url: https://oncall.clinic.example/hook\n    secrets: [" + secret + "]\n    types: [inbox.item_created, message.faild]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(env(map[string]string{"AFTERCARE_WEBHOOKS_FILE": file}))
	if err == nil || !strings.Contains(err.Error(), `AFTERCARE_WEBHOOKS_FILE: endpoint on-call: types: "message.faild" is not an event type`) {
		t.Errorf("bad type: %v", err)
	}
}

// TestClinicFileProblems: a clinic file that does not parse, or has a key
// that is not a setting, is named with the line and the fix.
func TestClinicFileProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for content, want := range map[string]string{
		"name: [X\n": "clinic.yaml: line 1",
		"name: X\nphone: \"1\"\ntimezone: UTC\nquiet_hour: {start: \"21:00\"}\n": "line 4: key quiet_hour is not a setting of the clinic profile",
	} {
		path := filepath.Join(dir, "clinic.yaml")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := config.LoadClinic(path)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "aftercare.Clinic") {
			t.Errorf("%q: %v, want %q", content, err, want)
		}
	}
}
