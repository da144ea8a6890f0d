// Package metrics exposes aftercare's Prometheus metrics: what the worker
// sent and how late, provider call times, webhook outcomes, opt-outs, and
// the task queues. Label values are steps, channels, outcomes and queue
// names: never patient data.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aftercare/aftercare"
)

// Metrics records aftercare's metrics in its own registry.
type Metrics struct {
	registry *prometheus.Registry
	messages *prometheus.CounterVec
	provider *prometheus.HistogramVec
	lateness *prometheus.HistogramVec
	webhooks *prometheus.CounterVec
	events   *prometheus.CounterVec
}

// Queues reports the task queues; the taskqueue package implements it.
type Queues interface {
	Stats() ([]aftercare.QueueStats, error)
}

// Inbox reports the clinic inbox; the redisstore package implements it.
type Inbox interface {
	InboxStats(ctx context.Context) (aftercare.InboxStats, error)
}

// New returns Metrics; with queues set, it also reports the size and
// latency of each task queue when scraped, and with inbox the open items.
func New(queues Queues, inbox Inbox) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aftercare_messages_total",
			Help: "Send attempts by step, channel and outcome (sent, failed, outcome_unknown, retry, expired, skipped, suppressed, deferred, rate_limited, dropped).",
		}, []string{"step", "channel", "outcome"}),
		provider: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aftercare_provider_call_seconds",
			Help:    "Time the provider (Twilio, SMTP) took to take a message.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"channel"}),
		lateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aftercare_send_lateness_seconds",
			Help:    "How long after its scheduled time a message was handed to the provider.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 15, 60, 300, 3600},
		}, []string{"channel"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aftercare_webhooks_total",
			Help: "Twilio webhook calls by hook (inbound, status) and result (received, a receipt status, forbidden, error).",
		}, []string{"hook", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aftercare_event_deliveries_total",
			Help: "Runs of outbound event deliveries by endpoint and result (delivered, retrying, failed: retries spent, disabled, dropped).",
		}, []string{"endpoint", "result"}),
	}
	m.registry.MustRegister(m.messages, m.provider, m.lateness, m.webhooks, m.events,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if queues != nil {
		m.registry.MustRegister(collector{queues})
	}
	if inbox != nil {
		m.registry.MustRegister(inboxCollector{inbox})
	}
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// Attempt records one run of a send task. provider is the provider call's
// duration and late how long after its time the message went out; both are
// only recorded for a send.
func (m *Metrics) Attempt(step string, ch aftercare.Channel, outcome aftercare.Outcome, provider, late time.Duration) {
	m.messages.WithLabelValues(step, string(ch), string(outcome)).Inc()
	if outcome == aftercare.OutcomeSent {
		m.provider.WithLabelValues(string(ch)).Observe(provider.Seconds())
		m.lateness.WithLabelValues(string(ch)).Observe(max(late, 0).Seconds())
	}
}

// Webhook records one webhook call.
func (m *Metrics) Webhook(hook, result string) {
	m.webhooks.WithLabelValues(hook, result).Inc()
}

// EventDelivery records one run of an event delivery.
func (m *Metrics) EventDelivery(endpoint, result string) {
	m.events.WithLabelValues(endpoint, result).Inc()
}

// Endpoints reports, for each endpoint named, whether a receiver has
// turned it off (410 Gone), asking disabled when scraped.
func (m *Metrics) Endpoints(names []string, disabled func(ctx context.Context, name string) (bool, error)) {
	m.registry.MustRegister(endpointCollector{names, disabled})
}

type endpointCollector struct {
	names    []string
	disabled func(ctx context.Context, name string) (bool, error)
}

var endpointOff = prometheus.NewDesc("aftercare_event_endpoint_disabled",
	"1 for an event endpoint that answered 410 Gone and gets nothing until an operator enables it.", []string{"endpoint"}, nil)

func (c endpointCollector) Describe(ch chan<- *prometheus.Desc) { ch <- endpointOff }

func (c endpointCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range c.names {
		off, err := c.disabled(ctx, name)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(endpointOff, err)
			return
		}
		v := 0.0
		if off {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(endpointOff, prometheus.GaugeValue, v, name)
	}
}

// collector reports the task queues: tasks by state, and latency (the age
// of the oldest pending task).
type collector struct{ queues Queues }

var (
	queueTasks = prometheus.NewDesc("aftercare_queue_tasks", "Tasks in each queue by state.", []string{"queue", "state"}, nil)
	queueAge   = prometheus.NewDesc("aftercare_queue_latency_seconds", "Age of the oldest pending task in each queue.", []string{"queue"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueTasks
	ch <- queueAge
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.queues.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueTasks, err)
		return
	}
	for _, q := range stats {
		for state, n := range map[string]int{
			"pending": q.Pending, "active": q.Active, "scheduled": q.Scheduled,
			"retry": q.Retry, "archived": q.Archived, "completed": q.Completed,
		} {
			ch <- prometheus.MustNewConstMetric(queueTasks, prometheus.GaugeValue, float64(n), q.Queue, state)
		}
		ch <- prometheus.MustNewConstMetric(queueAge, prometheus.GaugeValue, q.Latency.Seconds(), q.Queue)
	}
}

// inboxCollector reports the clinic inbox: open items by urgency, and how
// long the oldest open urgent item has waited (0 if there is none), for an
// alert rule that pages when it waits too long.
type inboxCollector struct{ inbox Inbox }

var (
	inboxOpen   = prometheus.NewDesc("aftercare_inbox_open_items", "Inbox items waiting for a person, by urgency.", []string{"urgency"}, nil)
	inboxOldest = prometheus.NewDesc("aftercare_inbox_oldest_urgent_age_seconds", "How long the oldest open urgent inbox item has waited; 0 if there is none.", nil, nil)
)

func (c inboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- inboxOpen
	ch <- inboxOldest
}

func (c inboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.inbox.InboxStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(inboxOpen, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(inboxOpen, prometheus.GaugeValue, float64(st.OpenUrgent), string(aftercare.Urgent))
	ch <- prometheus.MustNewConstMetric(inboxOpen, prometheus.GaugeValue, float64(st.OpenNormal), string(aftercare.Normal))
	age := 0.0
	if !st.OldestUrgent.IsZero() {
		age = time.Since(st.OldestUrgent).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(inboxOldest, prometheus.GaugeValue, age)
}
