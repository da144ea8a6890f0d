package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	gomail "github.com/wneessen/go-mail"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/twiliotest"
)

// naiveQueue is the asynq queue of the naive tasks.
const naiveQueue = "naive"

// sendAgainstNaive measures the sends of one channel twice, aftercare's
// worker and then the naive handler, the same number of messages each, and
// returns both rates in messages per second.
func (b *bench) sendAgainstNaive(ctx context.Context, ch aftercare.Channel) (ours, naive float64, err error) {
	if ours, err = b.send(ctx, string(ch), ch); err != nil {
		return 0, 0, fmt.Errorf("aftercare's %s sends: %w", ch, err)
	}
	if naive, err = b.sendNaive(ctx, ch); err != nil {
		return 0, 0, fmt.Errorf("naive %s sends: %w", ch, err)
	}
	return ours, naive, nil
}

// sendNaive enqueues b.Bookings naive tasks on ch, due now, each carrying
// the consent message as aftercare renders it, then runs the naive handler
// at the worker's concurrency against a fake Twilio or an SMTP server, and
// returns messages per second from start to the provider's acceptance of
// every message. The CPU profile, if asked for, is called "naive-" and the
// channel (see profilePath).
func (b *bench) sendNaive(ctx context.Context, ch aftercare.Channel) (float64, error) {
	out, err := b.consentMessage(ctx, ch)
	if err != nil {
		return 0, err
	}
	if _, err := b.fresh(ctx); err != nil {
		return 0, err
	}
	typ := naiveSMSTask
	if ch == aftercare.Email {
		typ = naiveEmailTask
	}
	client := asynq.NewClientFromRedisClient(b.rdb)
	if _, err := b.parallel("enqueued", b.Bookings, func(i int) error {
		payload, err := json.Marshal(naiveMessage{To: b.address(i, ch), Subject: out.Subject, Text: out.Text, HTML: out.HTML})
		if err != nil {
			return err
		}
		_, err = client.EnqueueContext(ctx, asynq.NewTask(typ, payload), asynq.Queue(naiveQueue))
		return err
	}); err != nil {
		return 0, fmt.Errorf("enqueue: %w", err)
	}
	b.step("naive handler: sending %d %s messages at concurrency %d", b.Bookings, ch, b.Concurrency)

	p, err := startProviders()
	if err != nil {
		return 0, err
	}
	defer p.close()
	h, closeHandler, err := b.naiveHandler(p, ch)
	if err != nil {
		return 0, err
	}
	defer closeHandler()
	sent := newSentCounter(b.Bookings)
	mux := asynq.NewServeMux()
	mux.Handle(typ, counting(h, sent))
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency: b.Concurrency, Queues: map[string]int{naiveQueue: 1},
		TaskCheckInterval: 200 * time.Millisecond, LogLevel: asynq.ErrorLevel,
	})

	stopProfile, err := b.startProfile("naive-" + string(ch))
	if err != nil {
		return 0, err
	}
	defer stopProfile()
	start := time.Now()
	if err := srv.Start(mux); err != nil {
		return 0, fmt.Errorf("start the naive worker: %w", err)
	}
	defer srv.Shutdown()
	return sent.await(ctx, start)
}

// address is booking i's patient's number for an SMS, address for an
// email.
func (b *bench) address(i int, ch aftercare.Channel) string {
	p := b.booking(i).Patient
	if ch == aftercare.Email {
		return p.Email
	}
	return p.Phone
}

// consentMessage is the first message aftercare sends on ch to a booking's
// patient (the consent), rendered as its worker renders it. The naive tasks
// carry it, so that both sides put the same bytes on the wire.
func (b *bench) consentMessage(ctx context.Context, ch aftercare.Channel) (aftercare.Outgoing, error) {
	if _, err := b.fresh(ctx); err != nil {
		return aftercare.Outgoing{}, err
	}
	sched := b.scheduler()
	tl, _, err := sched.Book(ctx, b.bookingOn(0, []aftercare.Channel{ch}))
	if err != nil {
		return aftercare.Outgoing{}, fmt.Errorf("book the sample booking: %w", err)
	}
	rec, err := sched.Record(ctx, tl.ID)
	if err != nil {
		return aftercare.Outgoing{}, fmt.Errorf("read the sample booking: %w", err)
	}
	now := time.Now()
	i := slices.IndexFunc(rec.Messages, func(m aftercare.Message) bool {
		return m.Channel == ch && m.Status == aftercare.StatusScheduled && !m.SendAt.After(now)
	})
	if i < 0 {
		return aftercare.Outgoing{}, fmt.Errorf("the sample booking has no %s message due now", ch)
	}
	renderer, err := b.renderer()
	if err != nil {
		return aftercare.Outgoing{}, err
	}
	out, err := renderer.Render(rec, rec.Messages[i].Step, ch, true)
	if err != nil {
		return aftercare.Outgoing{}, fmt.Errorf("render the sample message: %w", err)
	}
	return out, nil
}

// naiveHandler returns the naive handler of ch pointed at p, with
// connection settings as aftercare's senders have them (idle connections
// kept for every send in flight; for SMTP, neither NOOP nor RSET between
// messages), and the function that closes its connections.
func (b *bench) naiveHandler(p *providers, ch aftercare.Channel) (asynq.Handler, func(), error) {
	if ch == aftercare.SMS {
		base, err := url.Parse(p.twilio.URL())
		if err != nil {
			return nil, nil, fmt.Errorf("the fake Twilio's URL: %w", err)
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = b.Concurrency
		httpClient := &http.Client{Timeout: 10 * time.Second, Transport: toFake{base: base, next: t}}
		return newNaiveSMS(twiliotest.AccountSID, twiliotest.AuthToken, benchSMSFrom, httpClient), t.CloseIdleConnections, nil
	}
	host, port, err := net.SplitHostPort(p.mail.Addr())
	if err != nil {
		return nil, nil, fmt.Errorf("the SMTP server's address: %w", err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil, nil, fmt.Errorf("the SMTP server's port: %w", err)
	}
	h := &naiveEmail{
		host: host, from: benchFrom, idle: make(chan *gomail.Client, b.Concurrency),
		opts: []gomail.Option{gomail.WithPort(n), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithTimeout(30 * time.Second),
			gomail.WithoutNoop(), gomail.WithoutRset()},
	}
	return h, h.close, nil
}

// toFake sends each request to the fake Twilio at base instead of Twilio.
type toFake struct {
	base *url.URL
	next http.RoundTripper
}

func (t toFake) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = t.base.Scheme, t.base.Host, t.base.Host
	return t.next.RoundTrip(r)
}

// counting counts each task h handles without error in c.
func counting(h asynq.Handler, c *sentCounter) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := h.ProcessTask(ctx, t)
		if err == nil {
			c.sent()
		}
		return err
	})
}
