// Package config is aftercare's configuration: one struct, loaded and
// validated once at start-up from environment variables (twelve-factor), with
// every setting's name, default and meaning in one table that also writes
// the --help text.
package config

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/webhook"
)

// DevToken is the API token accepted in development when
// AFTERCARE_API_TOKENS is not set.
const DevToken = "dev-token"

// MinTokenLength is the shortest API token production accepts.
const MinTokenLength = 32

// Environments.
const (
	Development = "development"
	Production  = "production"
)

// Config is the whole configuration of a process.
type Config struct {
	Env      string
	HTTPAddr string
	RedisURL string // empty: embedded in-memory Redis
	// RedisWait is how long start-up waits for Redis to answer.
	RedisWait time.Duration
	APITokens []string
	PublicURL string
	// ConsentLinkExpiry is how long after the appointment's start a
	// consent link keeps working.
	ConsentLinkExpiry time.Duration
	// TrustedProxies are the addresses whose X-Forwarded-For the consent
	// page believes, to know the patient's address.
	TrustedProxies []netip.Prefix

	TwilioAccountSID          string
	TwilioAuthToken           string
	TwilioFromNumber          string
	TwilioMessagingServiceSID string
	TwilioAPIBaseURL          string

	SMTPURL  string // empty: emails go to the console outbox
	MailFrom string

	SMSRateLimit   float64
	EmailRateLimit float64

	// DataKeys encrypt booking records; the first encrypts, all decrypt.
	DataKeys [][]byte

	ClinicFile   string
	ProtocolsDir string
	OutboxFile   string

	// Role is what serve runs: "all", "api" or "worker" (a flag, not an
	// environment variable).
	Role string

	DashboardUser     string
	DashboardPassword string
	DashboardWritable bool
	// DashboardGenerated is true when development mode made up the
	// dashboard's credentials (and start-up prints them).
	DashboardGenerated bool

	Concurrency     int
	Retention       time.Duration
	ShutdownTimeout time.Duration
	// DrainGrace is how long, after a stop signal, /readyz answers 503
	// before the listener closes.
	DrainGrace time.Duration
	LogFormat  string

	// Outbound events: one endpoint from the environment, or a file of
	// several, loaded into Endpoints; EventConcurrency deliveries at once.
	WebhookURL       string
	WebhookSecrets   []string
	WebhooksFile     string
	EventConcurrency int
	Endpoints        []webhook.Endpoint

	// Clinic is the profile read from ClinicFile, or the built-in example.
	Clinic aftercare.Clinic
	// DevToken is true when the API accepts DevToken because no tokens are set.
	DevToken bool
}

// setting is one environment variable: its default, what it means, and how
// it is stored in Config.
type setting struct {
	name, def, help string
	set             func(c *Config, v string) error
}

// settings is the table of every setting; Load applies it and Usage prints it.
var settings = []setting{
	{"AFTERCARE_ENV", Development, "development or production; production refuses the embedded Redis, console senders, the dev token and tokens under 32 characters, and needs AFTERCARE_PUBLIC_URL, AFTERCARE_DATA_KEY and AFTERCARE_CLINIC_FILE",
		func(c *Config, v string) error { return oneOf(&c.Env, v, Development, Production) }},
	{"HTTP_ADDR", ":8080", "listen address of the API",
		func(c *Config, v string) error { c.HTTPAddr = v; return nil }},
	{"REDIS_URL", "", "redis://[:pass@]host:port[/db], rediss:// (TLS), redis-sentinel://[:pass@]host:port[,host:port]/MASTER or redis-cluster://host:port[,host:port]; unset: embedded in-memory Redis (nothing survives a restart)",
		func(c *Config, v string) error { c.RedisURL = v; return nil }},
	{"AFTERCARE_REDIS_WAIT", "30s", "how long start-up waits for Redis to answer, trying again with backoff, before giving up",
		func(c *Config, v string) error { return duration(&c.RedisWait, v) }},
	{"AFTERCARE_API_TOKENS", "", "comma-separated bearer tokens for the clinic API; unset in development: the token " + DevToken,
		func(c *Config, v string) error { c.APITokens = list(v); return nil }},
	{"AFTERCARE_PUBLIC_URL", "", "external base URL of this service, such as https://care.clinic.example: Twilio's webhooks are checked against it and consent links point to it; unset in development: http://localhost and the port of HTTP_ADDR",
		func(c *Config, v string) error { return httpURL(&c.PublicURL, v) }},
	{"AFTERCARE_CONSENT_LINK_EXPIRY", "48h", "how long after the appointment's start the link to a consent page keeps showing the receipt (acknowledging closes when the appointment begins)",
		func(c *Config, v string) error { return duration(&c.ConsentLinkExpiry, v) }},
	{"AFTERCARE_TRUSTED_PROXIES", "", "comma-separated addresses or CIDR ranges of the reverse proxies in front of the service, whose X-Forwarded-For names the patient's address on the consent page",
		func(c *Config, v string) error { return prefixes(&c.TrustedProxies, v) }},
	{"TWILIO_ACCOUNT_SID", "", "Twilio account SID; unset: SMS go to the console outbox",
		func(c *Config, v string) error { c.TwilioAccountSID = v; return nil }},
	{"TWILIO_AUTH_TOKEN", "", "Twilio auth token",
		func(c *Config, v string) error { c.TwilioAuthToken = v; return nil }},
	{"TWILIO_FROM_NUMBER", "", "sender number in E.164",
		func(c *Config, v string) error { c.TwilioFromNumber = v; return nil }},
	{"TWILIO_MESSAGING_SERVICE_SID", "", "Twilio Messaging Service SID, used instead of a From number",
		func(c *Config, v string) error { c.TwilioMessagingServiceSID = v; return nil }},
	{"TWILIO_API_BASE_URL", "https://api.twilio.com", "Twilio-compatible API base URL, for tests and self-hosted gateways",
		func(c *Config, v string) error { return httpURL(&c.TwilioAPIBaseURL, v) }},
	{"SMTP_URL", "", "smtp://user:pass@host:587 (STARTTLS), smtps://user:pass@host:465, or smtp://127.0.0.1:port?tls=none; unset: emails go to the console outbox",
		func(c *Config, v string) error { c.SMTPURL = v; return nil }},
	{"MAIL_FROM", "", "sender address of emails, such as care@clinic.example",
		func(c *Config, v string) error { c.MailFrom = v; return nil }},
	{"AFTERCARE_DATA_KEY", "", "base64 AES-256 key(s) that encrypt patient data in Redis, comma-separated for rotation: the first encrypts, all decrypt; unset: plain text (refused in production)",
		func(c *Config, v string) error { keys, err := ParseDataKeys(v); c.DataKeys = keys; return err }},
	{"SMS_RATE_LIMIT", "10", "SMS per second from the Twilio sender, shared by all workers; 0 = no limit",
		func(c *Config, v string) error { return rate(&c.SMSRateLimit, v) }},
	{"EMAIL_RATE_LIMIT", "5", "emails per second through the SMTP account, shared by all workers; 0 = no limit",
		func(c *Config, v string) error { return rate(&c.EmailRateLimit, v) }},
	{"AFTERCARE_CLINIC_FILE", "", "clinic profile (YAML: name, phone, address, website, timezone, sender_name, emergency_number, quiet_hours, opening_hours, replies, alerts, templates_dir, name_treatment_in_sms; see config/clinic.yaml); unset: built-in example clinic",
		func(c *Config, v string) error { c.ClinicFile = v; return nil }},
	{"AFTERCARE_PROTOCOLS_DIR", "", "directory of extra or replacement protocol files (TREATMENT.yaml)",
		func(c *Config, v string) error { c.ProtocolsDir = v; return nil }},
	{"AFTERCARE_OUTBOX_FILE", "aftercare-outbox.log", "file the console outbox appends to; empty: print only",
		func(c *Config, v string) error { c.OutboxFile = v; return nil }},
	{"AFTERCARE_WEBHOOK_URL", "", "URL that receives every event (booking, message, consent, patient and inbox changes), signed per Standard Webhooks; https in production",
		func(c *Config, v string) error { c.WebhookURL = v; return nil }},
	{"AFTERCARE_WEBHOOK_SECRET", "", "signing secret of AFTERCARE_WEBHOOK_URL, whsec_ and base64 (echo whsec_$(openssl rand -base64 32)); comma-separated while rotating: each signs",
		func(c *Config, v string) error { c.WebhookSecrets = list(v); return nil }},
	{"AFTERCARE_WEBHOOKS_FILE", "", "YAML file of several event endpoints (endpoints: name, url, secret or secrets, types), instead of AFTERCARE_WEBHOOK_URL",
		func(c *Config, v string) error { c.WebhooksFile = v; return nil }},
	{"AFTERCARE_WEBHOOK_CONCURRENCY", "10", "event deliveries in flight at once per worker process, apart from the sends",
		func(c *Config, v string) error { return positive(&c.EventConcurrency, v) }},
	{"DASHBOARD_USER", "", "user name for the asynq dashboard at /monitoring/; with DASHBOARD_PASSWORD it turns the dashboard on (development: on, user admin, password printed at start-up)",
		func(c *Config, v string) error { c.DashboardUser = v; return nil }},
	{"DASHBOARD_PASSWORD", "", "password for the dashboard",
		func(c *Config, v string) error { c.DashboardPassword = v; return nil }},
	{"DASHBOARD_WRITABLE", "false", "true lets the dashboard delete, run and archive tasks; read-only otherwise",
		func(c *Config, v string) error { return boolean(&c.DashboardWritable, v) }},
	{"WORKER_CONCURRENCY", "20", "sends in flight at once per worker process",
		func(c *Config, v string) error { return positive(&c.Concurrency, v) }},
	{"AFTERCARE_RETENTION", "720h", "how long a booking record is kept after its last deadline",
		func(c *Config, v string) error { return duration(&c.Retention, v) }},
	{"SHUTDOWN_TIMEOUT", "20s", "how long in-flight sends may take to finish on shutdown",
		func(c *Config, v string) error { return duration(&c.ShutdownTimeout, v) }},
	{"AFTERCARE_DRAIN_GRACE", "5s", "after a stop signal, how long /readyz answers 503 (so a load balancer stops sending) before the listener closes; 0s: close at once",
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("%q is not a duration such as 5s, or 0s", v)
			}
			c.DrainGrace = d
			return nil
		}},
	{"LOG_FORMAT", "", "json or text; default text in development, json in production",
		func(c *Config, v string) error { return oneOf(&c.LogFormat, v, "", "json", "text") }},
}

// Load builds the configuration from lookup (os.LookupEnv in production,
// a map in tests). It reports every problem at once, each naming its
// setting.
func Load(lookup func(string) (string, bool)) (*Config, error) {
	c := &Config{}
	var errs []error
	for _, s := range settings {
		v, ok := lookup(s.name)
		if !ok {
			v = s.def
		}
		if err := s.set(c, strings.TrimSpace(v)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	var err error
	if c.Endpoints, err = webhook.Load(webhook.Settings{URL: c.WebhookURL, Secrets: c.WebhookSecrets, File: c.WebhooksFile,
		Production: c.Env == Production}); err != nil {
		name := "AFTERCARE_WEBHOOK_URL"
		if c.WebhooksFile != "" {
			name = "AFTERCARE_WEBHOOKS_FILE"
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	clinic, err := LoadClinic(c.ClinicFile)
	if err != nil {
		return nil, fmt.Errorf("AFTERCARE_CLINIC_FILE: %w", err)
	}
	c.Clinic = clinic
	if c.Env == Production && clinic.Alerts.Email == "" {
		return nil, errors.New("AFTERCARE_CLINIC_FILE: alerts.email is required in production: patients' texts must reach a person at the clinic")
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
		if c.Env == Production {
			c.LogFormat = "json"
		}
	}
	if len(c.APITokens) == 0 && c.Env == Development {
		c.APITokens, c.DevToken = []string{DevToken}, true
	}
	if c.DashboardUser == "" && c.DashboardPassword == "" && c.Env == Development {
		c.DashboardUser, c.DashboardPassword, c.DashboardGenerated = "admin", randomPassword(), true
	}
	c.Role = RoleAll
	return c, nil
}

// Roles of a serve process.
const (
	RoleAll    = "all"
	RoleAPI    = "api"
	RoleWorker = "worker"
)

// DashboardEnabled reports whether the asynq dashboard is served.
func (c *Config) DashboardEnabled() bool { return c.DashboardUser != "" && c.DashboardPassword != "" }

func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand does not fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// PublicBase is the base URL consent links point to: AFTERCARE_PUBLIC_URL,
// or in development this machine on the API's port.
func (c *Config) PublicBase() string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	_, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil || port == "" {
		port = "8080"
	}
	return "http://localhost:" + port
}

// TwilioEnabled reports whether SMS go to Twilio rather than the console.
func (c *Config) TwilioEnabled() bool { return c.TwilioAccountSID != "" }

// SMTPEnabled reports whether emails go to an SMTP server rather than the
// console.
func (c *Config) SMTPEnabled() bool { return c.SMTPURL != "" }

// check validates settings that depend on each other.
func (c *Config) check() error {
	var errs []error
	if c.TwilioAccountSID != "" || c.TwilioAuthToken != "" {
		if c.TwilioAccountSID == "" || c.TwilioAuthToken == "" {
			errs = append(errs, errors.New("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set together"))
		}
		if c.TwilioFromNumber == "" && c.TwilioMessagingServiceSID == "" {
			errs = append(errs, errors.New("set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID to send SMS with Twilio"))
		}
	}
	if (c.DashboardUser == "") != (c.DashboardPassword == "") {
		errs = append(errs, errors.New("set DASHBOARD_USER and DASHBOARD_PASSWORD together"))
	}
	if c.SMTPURL != "" && c.MailFrom == "" {
		errs = append(errs, errors.New("MAIL_FROM is required with SMTP_URL"))
	}
	if c.Env == Production {
		errs = append(errs, c.checkProduction()...)
	}
	return errors.Join(errs...)
}

// checkProduction lists what production needs that development does
// without: no embedded Redis, console outbox, development token or example
// clinic.
func (c *Config) checkProduction() []error {
	var errs []error
	if c.RedisURL == "" {
		errs = append(errs, errors.New("REDIS_URL is required in production (the embedded Redis keeps nothing)"))
	}
	if len(c.APITokens) == 0 {
		errs = append(errs, errors.New("AFTERCARE_API_TOKENS is required in production; make one with: openssl rand -hex 32"))
	}
	for i, t := range c.APITokens {
		switch {
		case t == DevToken:
			errs = append(errs, fmt.Errorf("AFTERCARE_API_TOKENS: token %d is the development token %s, which anyone can read here; make one with: openssl rand -hex 32", i+1, DevToken))
		case len(t) < MinTokenLength:
			errs = append(errs, fmt.Errorf("AFTERCARE_API_TOKENS: token %d has %d characters; production needs %d or more: openssl rand -hex 32", i+1, len(t), MinTokenLength))
		}
	}
	if !c.TwilioEnabled() {
		errs = append(errs, errors.New("TWILIO_ACCOUNT_SID is required in production (console SMS reach nobody)"))
	}
	if !c.SMTPEnabled() {
		errs = append(errs, errors.New("SMTP_URL is required in production (console emails reach nobody)"))
	}
	if c.PublicURL == "" {
		errs = append(errs, errors.New("AFTERCARE_PUBLIC_URL is required in production (Twilio's replies and receipts are checked against it, and consent links point to it)"))
	}
	if len(c.DataKeys) == 0 {
		errs = append(errs, errors.New("AFTERCARE_DATA_KEY is required in production (patient contact details are encrypted in Redis); make one with: openssl rand -base64 32"))
	}
	if c.ClinicFile == "" {
		errs = append(errs, errors.New("AFTERCARE_CLINIC_FILE is required in production (the built-in example clinic alerts an example address)"))
	}
	return errs
}

// Usage writes every setting: its name and default, then what it means,
// wrapped to fit 100 columns.
func Usage(w io.Writer) {
	for _, s := range settings {
		def := ""
		if s.def != "" {
			def = " (default " + s.def + ")"
		}
		fmt.Fprintf(w, "  %s%s\n", s.name, def)
		for _, line := range wrap(s.help, 100-6) {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
}

// wrap breaks text into lines of at most width characters, between words.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len([]rune(line))+1+len([]rune(word)) > width {
			lines, line = append(lines, line), ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

//go:embed clinic.yaml
var builtinClinic []byte

// yamlProblem is a YAML decoding error in a clinic's words: an unknown key
// is named with the fix, not with the Go type it would have gone into.
func yamlProblem(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if typeErr, ok := errors.AsType[*yaml.TypeError](err); ok {
		var lines []string
		for _, e := range typeErr.Errors {
			if i := strings.Index(e, " not found in type "); i >= 0 {
				e = e[:i] + " is not a setting of the clinic profile; check its spelling and indentation against config/clinic.yaml"
			}
			lines = append(lines, strings.Replace(e, "field ", "key ", 1))
		}
		msg = strings.Join(lines, "; ")
	}
	return msg
}

// LoadClinic reads and validates a clinic profile; path "" is the built-in
// example clinic.
func LoadClinic(path string) (aftercare.Clinic, error) {
	data := builtinClinic
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return aftercare.Clinic{}, err
		}
	}
	var c aftercare.Clinic
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %s", path, yamlProblem(err))
	}
	var errs []string
	if c.Name == "" {
		errs = append(errs, "name is required")
	}
	if c.Phone == "" {
		errs = append(errs, "phone is required: every message says how to reach the clinic")
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil || c.Timezone == "" {
		errs = append(errs, fmt.Sprintf("timezone %q is not an IANA time zone name", c.Timezone))
	}
	for _, t := range []string{c.QuietHours.Start, c.QuietHours.End} {
		if _, err := time.Parse("15:04", t); t != "" && err != nil {
			errs = append(errs, fmt.Sprintf("quiet_hours: %q is not a 24-hour time such as 21:00", t))
		}
	}
	if (c.QuietHours.Start == "") != (c.QuietHours.End == "") {
		errs = append(errs, "quiet_hours: set both start and end, or neither")
	}
	if c.TemplatesDir != "" {
		if !filepath.IsAbs(c.TemplatesDir) && path != "" {
			c.TemplatesDir = filepath.Join(filepath.Dir(path), c.TemplatesDir)
		}
		if fi, err := os.Stat(c.TemplatesDir); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Sprintf("templates_dir %q is not a directory (a relative path is read from the clinic file's directory)", c.TemplatesDir))
		}
	}
	errs = append(errs, checkReplies(&c)...)
	if len(errs) > 0 {
		return c, errors.New(strings.Join(errs, "; "))
	}
	if c.SenderName == "" {
		c.SenderName = c.Name
	}
	return c, nil
}

// Defaults of the clinic profile's reply and alert settings.
const (
	defaultEmergencyNumber = "911"
	defaultAnswerWithin    = 2 * time.Hour
	defaultReescalateAfter = 15 * time.Minute
)

// checkReplies validates the settings for patients' texts and fills in
// their defaults.
func checkReplies(c *aftercare.Clinic) []string {
	var errs []string
	if c.EmergencyNumber == "" {
		c.EmergencyNumber = defaultEmergencyNumber
	}
	if err := c.OpeningHours.Check(); err != nil {
		errs = append(errs, "opening_hours: "+err.Error())
	}
	if c.Replies.Within == 0 {
		c.Replies.Within = defaultAnswerWithin
	}
	if c.Alerts.ReescalateAfter == 0 {
		c.Alerts.ReescalateAfter = defaultReescalateAfter
	}
	if c.Replies.Within < 0 || c.Alerts.ReescalateAfter < time.Second {
		errs = append(errs, "replies.answer_within and alerts.reescalate_after must be positive durations such as 2h or 15m")
	}
	if c.Alerts.Email != "" {
		if addr, err := mail.ParseAddress(c.Alerts.Email); err != nil || addr.Name != "" {
			errs = append(errs, fmt.Sprintf("alerts.email %q is not an email address", c.Alerts.Email))
		}
	}
	if c.Alerts.OnCallPhone != "" {
		if phone, err := aftercare.NormalizePhone(c.Alerts.OnCallPhone); err != nil {
			errs = append(errs, fmt.Sprintf("alerts.on_call_phone %q %v", c.Alerts.OnCallPhone, err))
		} else {
			c.Alerts.OnCallPhone = phone
		}
	}
	return errs
}

func oneOf(dst *string, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			*dst = v
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func prefixes(dst *[]netip.Prefix, v string) error {
	*dst = nil
	for _, s := range list(v) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Errorf("%q is not an IP address or a CIDR range such as 10.0.0.0/8", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		*dst = append(*dst, p.Masked())
	}
	return nil
}

func httpURL(dst *string, v string) error {
	if v == "" {
		*dst = ""
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", v)
	}
	*dst = strings.TrimSuffix(v, "/")
	return nil
}

func rate(dst *float64, v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 10000 {
		return fmt.Errorf("%q is not a rate: use messages per second, such as 10, or 0 for no limit", v)
	}
	*dst = f
	return nil
}

// ParseDataKeys reads AFTERCARE_DATA_KEY: comma-separated base64 keys of
// 32 bytes.
func ParseDataKeys(v string) ([][]byte, error) {
	var keys [][]byte
	for i, s := range list(v) {
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("key %d is not 32 bytes in base64; make one with: openssl rand -base64 32", i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func boolean(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	*dst = b
	return nil
}

func positive(dst *int, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return fmt.Errorf("%q is not a positive whole number", v)
	}
	*dst = n
	return nil
}

func duration(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration such as 30s or 720h", v)
	}
	*dst = d
	return nil
}
