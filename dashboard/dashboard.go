// Package dashboard serves asynq's web dashboard (asynqmon) from the
// aftercare binary, behind basic auth, read-only unless asked otherwise, and
// showing task payloads as booking, step and channel only.
package dashboard

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
)

// Path is where the dashboard is served.
const Path = "/monitoring"

// Config configures the dashboard.
type Config struct {
	// Redis is a client for the dashboard's own use.
	Redis    redis.UniversalClient
	User     string
	Password string
	// Writable lets operators delete, run and archive tasks from the page.
	Writable bool
}

// New returns the dashboard handler, to be mounted at Path + "/".
func New(cfg Config) http.Handler {
	mon := asynqmon.New(asynqmon.Options{
		RootPath:         Path,
		RedisConnOpt:     conn{cfg.Redis},
		ReadOnly:         !cfg.Writable,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(formatPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(func(string, []byte) string { return "" }),
	})
	return basicAuth(mon, cfg.User, cfg.Password)
}

// conn hands asynqmon the client it was given rather than a new one.
type conn struct{ rdb redis.UniversalClient }

func (c conn) MakeRedisClient() any { return c.rdb }

var _ asynq.RedisConnOpt = conn{}

// formatPayload shows a send task as what it refers to. Payloads carry no
// patient data; this keeps it that way on screen even if one ever did.
func formatPayload(taskType string, payload []byte) string {
	if taskType == aftercare.TypeAlert {
		ref, err := aftercare.ParseAlertRef(payload)
		if err != nil {
			return fmt.Sprintf("(%s: unreadable payload)", taskType)
		}
		if ref.Channel == "" {
			return fmt.Sprintf("inbox item %s: check before alert round %d", ref.ItemID, ref.Round)
		}
		return fmt.Sprintf("inbox item %s: alert round %d by %s", ref.ItemID, ref.Round, ref.Channel)
	}
	if taskType == aftercare.TypeWebhook {
		d, err := aftercare.ParseDelivery(payload)
		if err != nil {
			return fmt.Sprintf("(%s: unreadable payload)", taskType)
		}
		var n aftercare.Notice
		_ = json.Unmarshal(d.Body, &n) // the type is a courtesy; the id says which event
		return fmt.Sprintf("event %s (%s) to endpoint %s", d.EventID, n.Type, d.Endpoint)
	}
	ref, err := aftercare.ParseMessageRef(payload)
	if err != nil {
		return fmt.Sprintf("(%s: unreadable payload)", taskType)
	}
	s := fmt.Sprintf("booking %s v%d, %s by %s", ref.BookingID, ref.Version, ref.Step, ref.Channel)
	if ref.Deadline > 0 {
		s += ", send by " + time.Unix(ref.Deadline, 0).UTC().Format(time.RFC3339)
	}
	return s
}

func basicAuth(next http.Handler, user, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="aftercare dashboard", charset="UTF-8"`)
			http.Error(w, "sign in with the dashboard's user name and password", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
