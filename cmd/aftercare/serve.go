package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/api"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/consent"
	"github.com/aftercare/aftercare/console"
	"github.com/aftercare/aftercare/dashboard"
	"github.com/aftercare/aftercare/inbox"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/metrics"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/service"
	"github.com/aftercare/aftercare/smtp"
	"github.com/aftercare/aftercare/taskqueue"
	"github.com/aftercare/aftercare/twilio"
	"github.com/aftercare/aftercare/webhook"
	"github.com/aftercare/aftercare/worker"
)

var (
	_ taskqueue.Handler      = (*worker.Worker)(nil)
	_ taskqueue.AlertHandler = (*inbox.Inbox)(nil)
	_ taskqueue.EventHandler = (*webhook.Sender)(nil)
	_ webhook.Outbox         = (*redisstore.Store)(nil)
	_ webhook.Queue          = (*taskqueue.Queue)(nil)
)

// app is one wired aftercare process.
type app struct {
	cfg *config.Config
	log *slog.Logger
	// The worker, the API and the dashboard each have their own client of
	// the one Redis: the API's gives up quickly (apiRedisTimeout), and a
	// worker's calls, which may wait, never hold an API request.
	rdb, apiRedis, dashRedis redis.UniversalClient
	embedded                 *miniredis.Miniredis // nil with REDIS_URL
	email                    worker.Sender
	worker                   *taskqueue.Server
	handler                  *worker.Worker
	work, api                *side
	events                   *taskqueue.Server // nil without event endpoints
	relay                    *webhook.Relay
	sender                   *webhook.Sender
	metrics                  *metrics.Metrics
	http                     *http.Server
	ready                    atomic.Bool
}

func serve(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	redis.SetLogger(redisLog{log}) // go-redis's own complaints, in the service's log format
	a, err := newApp(ctx, cfg, log, stdout)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		a.close()
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	return a.run(ctx, ln)
}

// redisLog passes go-redis's messages (a connection that failed, a
// failover) to the service's log as warnings.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, aftercare.Redact(fmt.Sprintf(format, v...)))
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// newApp builds every part of the process from cfg; nothing runs yet.
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer) (*app, error) {
	a := &app{cfg: cfg, log: log}
	built := false
	defer func() {
		if !built { // let go of what was opened before the failure
			a.close()
		}
	}()

	protocols, flags, err := service.Protocols(cfg.ProtocolsDir)
	if err != nil {
		return nil, err
	}
	links, err := consent.NewLinks(cfg.PublicBase(), cfg.DataKeys)
	if err != nil {
		return nil, fmt.Errorf("AFTERCARE_DATA_KEY: %w", err)
	}
	renderer, err := newRenderer(cfg.Clinic, protocols, links)
	if err != nil {
		return nil, err
	}
	sms, email, err := senders(cfg, stdout)
	if err != nil {
		return nil, err
	}
	a.email = email
	if err := a.openRedis(ctx); err != nil {
		return nil, err
	}

	senders := service.Senders{Renderer: renderer, SMS: sms, Email: email, RedFlags: flags}
	if a.work, err = a.newSide(a.rdb, protocols, senders); err != nil {
		return nil, err
	}
	a.api = a.work // a worker process serves no API
	if cfg.Role != config.RoleWorker {
		if a.api, err = a.newSide(a.apiRedis, protocols, senders); err != nil {
			return nil, err
		}
	}
	a.metrics = metrics.New(a.work.Queue, a.work.Store)
	if len(cfg.Endpoints) > 0 {
		a.relay = webhook.NewRelay(webhook.RelayConfig{Outbox: a.work.Store, Queue: a.work.Queue, Endpoints: cfg.Endpoints, Logger: log})
		a.sender = webhook.NewSender(webhook.SenderConfig{Endpoints: cfg.Endpoints, State: a.work.Store, Metrics: a.metrics, Logger: log})
		a.events = taskqueue.NewEventServer(a.rdb, taskqueue.ServerConfig{
			Concurrency: cfg.EventConcurrency, ShutdownTimeout: cfg.ShutdownTimeout, Logger: log,
		})
		names := make([]string, len(cfg.Endpoints))
		for i, e := range cfg.Endpoints {
			names[i] = e.Name
		}
		a.metrics.Endpoints(names, a.work.Store.EndpointDisabled)
	}
	a.worker = taskqueue.NewServer(a.rdb, taskqueue.ServerConfig{
		Concurrency: cfg.Concurrency, ShutdownTimeout: cfg.ShutdownTimeout, Logger: log,
	})
	a.handler = worker.New(worker.Config{
		Store: a.work.Store, Renderer: renderer, SMS: sms, Email: email,
		Protocols: protocols, Clinic: cfg.Clinic, Logger: log, Metrics: a.metrics, Followups: a.work.Bookings, Finder: finder(sms),
		Limiter: redisstore.NewLimiter(a.rdb, map[aftercare.Channel]float64{
			aftercare.SMS: cfg.SMSRateLimit, aftercare.Email: cfg.EmailRateLimit,
		}),
	})
	a.http = &http.Server{
		Handler: a.routes(consent.New(consent.Config{
			Links: links, Bookings: a.api.Bookings, Pages: renderer, Clinic: cfg.Clinic, Expiry: cfg.ConsentLinkExpiry,
			PublicURL: cfg.PublicURL, TrustedProxies: cfg.TrustedProxies, Logger: log,
		})),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	built = true
	return a, nil
}

// apiRedisTimeout bounds each try of a call of the API's Redis client:
// with the clinic API's 5 s deadline on each request (api), a Redis that is
// down or hung costs a request seconds, not the 20 s of go-redis's retries
// at its 3 s default; Twilio's webhooks, which have no deadline, keep the
// retries to ride out a blip.
const apiRedisTimeout = 2 * time.Second

// side is the booking side of the service on one Redis client (the worker
// and the API each have one), with the operator's view of event endpoints.
type side struct {
	*service.Side
	operator api.Events // nil without event endpoints
}

// newSide builds the booking side on rdb.
func (a *app) newSide(rdb redis.UniversalClient, protocols map[string]aftercare.Protocol, senders service.Senders) (*side, error) {
	s, err := service.NewSide(rdb, a.cfg, protocols, senders, a.log)
	if err != nil {
		return nil, err
	}
	out := &side{Side: s}
	if len(a.cfg.Endpoints) > 0 {
		out.operator = webhook.NewOperator(a.cfg.Endpoints, s.Queue, s.Store)
	}
	return out, nil
}

// routes is the HTTP surface of the process: the clinic API, webhooks,
// consent pages, metrics and dashboard; a worker-only process serves its
// probes and metrics.
func (a *app) routes(pages http.Handler) http.Handler {
	if a.cfg.Role == config.RoleWorker {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metrics.Handler())
		mux.Handle("/", api.Probes(a.readiness))
		return mux
	}
	srv := api.New(api.Config{
		Bookings:         a.api.Bookings,
		Inbox:            a.api.Inbox,
		Tokens:           a.cfg.APITokens,
		Ready:            a.readiness,
		TwilioAuthToken:  a.cfg.TwilioAuthToken,
		PublicURL:        a.cfg.PublicURL,
		UnsignedWebhooks: a.unsignedWebhooks(),
		Webhooks:         a.metrics.Webhook,
		Events:           a.api.operator,
		ConsentPages:     pages,
		Logger:           a.log,
	})
	srv.Handle("GET /metrics", a.metrics.Handler())
	if a.cfg.DashboardEnabled() {
		srv.Handle(dashboard.Path+"/", dashboard.New(dashboard.Config{
			Redis: a.dashRedis, User: a.cfg.DashboardUser, Password: a.cfg.DashboardPassword, Writable: a.cfg.DashboardWritable,
		}))
	}
	return srv
}

// statusCallback is where Twilio posts delivery receipts; none without a
// public URL.
func statusCallback(publicURL string) string {
	if publicURL == "" {
		return ""
	}
	return publicURL + "/webhooks/twilio/status"
}

// newRenderer loads the built-in templates and the clinic's own, if any;
// consent messages link to pages made by links.
func newRenderer(clinic aftercare.Clinic, protocols map[string]aftercare.Protocol, links messages.Linker) (*messages.Renderer, error) {
	opts := []messages.Option{messages.Links(links)}
	if clinic.TemplatesDir != "" {
		opts = append(opts, messages.Overrides(os.DirFS(clinic.TemplatesDir)))
	}
	r, err := messages.New(clinic, protocols, opts...)
	if err != nil {
		return nil, fmt.Errorf("message templates (built-in, and the clinic's templates_dir %q): %w", clinic.TemplatesDir, err)
	}
	return r, nil
}

// senders picks Twilio and SMTP when configured, the console outbox
// otherwise.
func senders(cfg *config.Config, stdout io.Writer) (sms, email worker.Sender, err error) {
	outbox := console.New(stdout, cfg.OutboxFile)
	sms, email = outbox, outbox
	if cfg.TwilioEnabled() {
		if sms, err = twilio.New(twilio.Config{
			AccountSID:          cfg.TwilioAccountSID,
			AuthToken:           cfg.TwilioAuthToken,
			From:                cfg.TwilioFromNumber,
			MessagingServiceSID: cfg.TwilioMessagingServiceSID,
			BaseURL:             cfg.TwilioAPIBaseURL,
			StatusCallback:      statusCallback(cfg.PublicURL),
		}); err != nil {
			return nil, nil, settingsError(err, map[string]string{
				"AccountSID": "TWILIO_ACCOUNT_SID", "AuthToken": "TWILIO_AUTH_TOKEN",
				"From": "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID", "BaseURL": "TWILIO_API_BASE_URL",
			})
		}
	}
	if cfg.SMTPEnabled() {
		if email, err = smtp.New(smtp.Config{URL: cfg.SMTPURL, From: cfg.MailFrom, FromName: cfg.Clinic.SenderName}); err != nil {
			return nil, nil, settingsError(err, map[string]string{"URL": "SMTP_URL", "From": "MAIL_FROM"})
		}
	}
	return sms, email, nil
}

// finder is the SMS sender as a Finder, if it can be asked about a text
// in doubt (Twilio can; the console outbox never leaves one in doubt).
func finder(sms worker.Sender) worker.Finder {
	f, _ := sms.(worker.Finder)
	return f
}

// settingsError renames the fields of an adapter's configuration error
// after the settings they come from: adapters name their own fields, and
// only this command knows the environment.
func settingsError(err error, settings map[string]string) error {
	e, ok := errors.AsType[*aftercare.Error](err)
	if !ok || len(e.Fields) == 0 {
		return err
	}
	lines := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		name := settings[f.Field]
		if name == "" {
			name = f.Field
		}
		lines[i] = name + ": " + f.Message
	}
	return errors.New(strings.Join(lines, "\n"))
}

func (a *app) openRedis(stop context.Context) error {
	var clients func(timeout time.Duration) redis.UniversalClient
	if a.cfg.RedisURL == "" {
		a.embedded = miniredis.NewMiniRedis()
		a.embedded.ClockTTL(true)
		if err := a.embedded.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("embedded Redis: %w", err)
		}
		clients = func(time.Duration) redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: a.embedded.Addr()})
		}
	} else {
		target, err := redisstore.ParseURL(a.cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		clients = target.Client
	}
	a.rdb, a.apiRedis, a.dashRedis = clients(0), clients(apiRedisTimeout), clients(0)
	if a.embedded != nil {
		return nil
	}
	// A Redis that starts with the service (compose, Kubernetes) may answer
	// a little later: try again with backoff, for AFTERCARE_REDIS_WAIT.
	// A signal ends the wait.
	deadline := time.Now().Add(a.cfg.RedisWait)
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(stop, min(5*time.Second, time.Until(deadline)+time.Second))
		err := a.rdb.Ping(ctx).Err()
		cancel()
		switch {
		case err == nil:
			return nil
		case stop.Err() != nil:
			return errors.New("stopped while waiting for Redis")
		case time.Now().Add(delay).After(deadline):
			return fmt.Errorf("REDIS_URL: Redis did not answer in %s (%d %s): %s; check that it runs and that REDIS_URL names it, or wait longer with AFTERCARE_REDIS_WAIT",
				a.cfg.RedisWait, attempt, plural(attempt, "try", "tries"), aftercare.Redact(err.Error()))
		}
		a.log.Warn("waiting for Redis", "try", attempt, "error", aftercare.Redact(err.Error()), "next_try_in", delay)
		select {
		case <-stop.Done():
			return errors.New("stopped while waiting for Redis")
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// unsignedWebhooks reports whether the webhooks go unchecked: in
// development, with no Twilio auth token to check them with.
func (a *app) unsignedWebhooks() bool {
	return a.cfg.Env == config.Development && a.cfg.TwilioAuthToken == ""
}

// readiness is /readyz: ready while running and Redis answers.
func (a *app) readiness(ctx context.Context) error {
	if !a.ready.Load() {
		return errors.New("starting or shutting down")
	}
	if err := a.apiRedis.Ping(ctx).Err(); err != nil { // the log, not the probe's answer, names addresses
		a.log.Warn("not ready: Redis does not answer", "error", aftercare.Redact(err.Error()))
		return errors.New("Redis does not answer")
	}
	return nil
}

// run serves until ctx ends, then shuts down in order: stop being ready,
// stop taking requests, let in-flight sends finish (unfinished tasks go back
// to Redis), close Redis.
func (a *app) run(ctx context.Context, ln net.Listener) error {
	defer a.close()
	a.announce(ln.Addr().String())
	runsWorker := a.cfg.Role != config.RoleAPI
	if runsWorker {
		if err := a.worker.Start(taskqueue.Handlers{Sends: a.handler, Alerts: a.work.Inbox}); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
	}
	sendsEvents := runsWorker && a.events != nil
	var relay sync.WaitGroup
	relayCtx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	if sendsEvents {
		if err := a.events.StartEvents(a.sender); err != nil {
			return fmt.Errorf("start event deliveries: %w", err)
		}
		relay.Go(func() { a.relay.Run(relayCtx) })
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.http.Serve(ln) }()
	a.ready.Store(true)

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("HTTP server: %w", err)
	}
	a.ready.Store(false)
	if err == nil && a.cfg.DrainGrace > 0 {
		// /readyz says not ready while the listener still takes calls, so a
		// load balancer stops sending before connections are refused.
		a.log.Info("stopping: not ready, and the listener closes after the grace", "grace", a.cfg.DrainGrace)
		time.Sleep(a.cfg.DrainGrace)
	}
	a.log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if herr := a.http.Shutdown(shutdownCtx); herr != nil {
		a.log.Warn("HTTP shutdown", "error", herr)
	}
	if runsWorker {
		a.worker.Shutdown() // in-flight sends finish; unfinished tasks go back to Redis
	}
	stopRelay()
	relay.Wait() // what a pass had taken stays due: the next relay takes it
	if sendsEvents {
		a.events.Shutdown()
	}
	a.log.Info("stopped")
	return err
}

func (a *app) announce(addr string) {
	if a.embedded != nil {
		a.log.Warn("REDIS_URL is not set: using an embedded in-memory Redis. NOTHING IS DURABLE: every booking and scheduled message is lost when this process stops.")
	}
	if !a.cfg.TwilioEnabled() {
		a.log.Warn("TWILIO_ACCOUNT_SID is not set: SMS go to the console outbox, not to patients", "outbox_file", a.cfg.OutboxFile)
	}
	if !a.cfg.SMTPEnabled() {
		a.log.Warn("SMTP_URL is not set: emails go to the console outbox, not to patients", "outbox_file", a.cfg.OutboxFile)
	}
	if len(a.cfg.DataKeys) == 0 {
		a.log.Warn("AFTERCARE_DATA_KEY is not set: patient contact details are stored in Redis in plain text")
	}
	if alerts := a.cfg.Clinic.Alerts; alerts.Email == "" && alerts.OnCallPhone == "" {
		a.log.Warn("the clinic profile sets no alerts (alerts.email, alerts.on_call_phone): patients' texts that need a person reach only the inbox API")
	} else if alerts.OnCallPhone == "" {
		a.log.Warn("the clinic profile sets no alerts.on_call_phone: urgent patient texts are alerted by email only")
	}
	if a.unsignedWebhooks() {
		a.log.Warn("TWILIO_AUTH_TOKEN is not set: development mode takes Twilio's webhooks unsigned, so you can post a patient's text to /webhooks/twilio/inbound yourself")
	}
	for _, e := range a.cfg.Endpoints {
		types := "all"
		if len(e.Types) > 0 {
			types = fmt.Sprint(e.Types)
		}
		a.log.Info("events go to endpoint", "endpoint", e.Name, "types", types)
	}
	if a.cfg.DevToken {
		a.log.Warn("AFTERCARE_API_TOKENS is not set: development mode accepts the API token " + config.DevToken)
	}
	if a.cfg.DashboardEnabled() && a.cfg.Role != config.RoleWorker {
		if a.cfg.DashboardGenerated {
			a.log.Warn("development mode: the dashboard is at /monitoring/ (user admin, password " + a.cfg.DashboardPassword + ")")
		} else {
			a.log.Info("dashboard at /monitoring/", "writable", a.cfg.DashboardWritable)
		}
	}
	a.log.Info("aftercare listening", "addr", addr, "role", a.cfg.Role, "env", a.cfg.Env, "clinic", a.cfg.Clinic.Name)
}

func (a *app) close() {
	if c, ok := a.email.(interface{ Close() }); ok {
		c.Close() // the SMTP connections kept between sends
	}
	for _, c := range []redis.UniversalClient{a.rdb, a.apiRedis, a.dashRedis} {
		if c != nil {
			c.Close()
		}
	}
	if a.embedded != nil {
		a.embedded.Close()
	}
}
