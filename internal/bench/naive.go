package bench

// The naive baseline: what a clinic team would write without aftercare. A
// task carries the patient's number or address and the finished message,
// and its handler hands them to the provider. No record, no claim, no
// deadline, no audit: a task that fails is retried by asynq, and one that
// runs twice sends twice.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/hibiken/asynq"
	twilioclient "github.com/twilio/twilio-go/client"
	twilioapi "github.com/twilio/twilio-go/rest/api/v2010"
	gomail "github.com/wneessen/go-mail"
)

// Task types of the naive handlers.
const (
	naiveSMSTask   = "naive:sms"
	naiveEmailTask = "naive:email"
)

// naiveMessage is a naive task's payload.
type naiveMessage struct {
	To      string `json:"to"`
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text"`
	HTML    string `json:"html,omitempty"`
}

// decodeNaive reads a naive task's payload; one that cannot be read is
// never tried again.
func decodeNaive(t *asynq.Task) (naiveMessage, error) {
	var m naiveMessage
	if err := json.Unmarshal(t.Payload(), &m); err != nil {
		return m, fmt.Errorf("%s payload: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	return m, nil
}

// naiveSMS texts each task's message with twilio-go. It is the 2010 API
// service that twilio.NewRestClient exposes as Api, built without the other
// Twilio products.
type naiveSMS struct {
	twilio *twilioapi.ApiService
	from   string
}

func newNaiveSMS(accountSID, authToken, from string, httpClient *http.Client) naiveSMS {
	c := &twilioclient.Client{Credentials: twilioclient.NewCredentials(accountSID, authToken), HTTPClient: httpClient}
	c.SetAccountSid(accountSID)
	return naiveSMS{twilio: twilioapi.NewApiService(twilioclient.NewRequestHandler(c)), from: from}
}

func (h naiveSMS) ProcessTask(_ context.Context, t *asynq.Task) error {
	m, err := decodeNaive(t)
	if err != nil {
		return err
	}
	if _, err := h.twilio.CreateMessage((&twilioapi.CreateMessageParams{}).SetFrom(h.from).SetTo(m.To).SetBody(m.Text)); err != nil {
		return fmt.Errorf("twilio: %w", err)
	}
	return nil
}

// naiveEmail mails each task's message with go-mail. It keeps up to
// cap(idle) connections open between messages, one go-mail client each,
// so a message goes on a connection no other is using.
type naiveEmail struct {
	host string
	opts []gomail.Option
	from string
	idle chan *gomail.Client
}

func (h *naiveEmail) ProcessTask(ctx context.Context, t *asynq.Task) error {
	m, err := decodeNaive(t)
	if err != nil {
		return err
	}
	msg := gomail.NewMsg()
	if err := msg.From(h.from); err != nil {
		return fmt.Errorf("from: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("to: %v: %w", err, asynq.SkipRetry)
	}
	msg.Subject(m.Subject)
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	c, err := h.conn(ctx)
	if err != nil {
		return fmt.Errorf("smtp: connect: %w", err)
	}
	if err := c.Send(msg); err != nil {
		c.Close()
		return fmt.Errorf("smtp: %w", err)
	}
	select {
	case h.idle <- c:
	default:
		c.Close()
	}
	return nil
}

// conn returns an idle connection, or a new one.
func (h *naiveEmail) conn(ctx context.Context) (*gomail.Client, error) {
	select {
	case c := <-h.idle:
		return c, nil
	default:
	}
	c, err := gomail.NewClient(h.host, h.opts...)
	if err != nil {
		return nil, err
	}
	if err := c.DialWithContext(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// close closes the idle connections.
func (h *naiveEmail) close() {
	for {
		select {
		case c := <-h.idle:
			c.Close()
		default:
			return
		}
	}
}
