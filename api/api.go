// Package api is the clinic's HTTP JSON API: bookings in, timelines out,
// errors as RFC 9457 problem documents that name the field and the fix.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aftercare/aftercare"
)

// Bookings is what the API needs from the scheduler.
type Bookings interface {
	Book(ctx context.Context, b aftercare.Booking) (*aftercare.Timeline, bool, error)
	Reschedule(ctx context.Context, b aftercare.Booking) (*aftercare.Timeline, bool, error)
	Cancel(ctx context.Context, id string, notify bool) (*aftercare.Timeline, error)
	StopAftercare(ctx context.Context, id, reason string) (*aftercare.Timeline, error)
	Resend(ctx context.Context, id, step string, ch aftercare.Channel, by, reason string) (*aftercare.Timeline, error)
	Treated(ctx context.Context, id string, at time.Time) (*aftercare.Timeline, error)
	Get(ctx context.Context, id string) (*aftercare.Timeline, error)
	ConsentRecord(ctx context.Context, id string) (*aftercare.ConsentRecord, error)
	Receipt(ctx context.Context, r aftercare.Receipt) error
}

// Config holds the API's dependencies.
type Config struct {
	Bookings Bookings
	// Inbox takes patients' texts and serves the clinic inbox.
	Inbox Inbox
	// Tokens are the accepted bearer tokens. With none, every call to
	// /v1/ is refused.
	Tokens []string
	// Ready reports whether the service can take work; /readyz answers 503
	// with its error. Nil means always ready.
	Ready func(context.Context) error
	// TwilioAuthToken and PublicURL check the signatures of Twilio's
	// webhooks; without both, the webhooks answer 503.
	TwilioAuthToken string
	PublicURL       string
	// UnsignedWebhooks takes Twilio's webhooks without a signature when
	// there is no auth token to check one with: for trying the service
	// locally, never in production.
	UnsignedWebhooks bool
	// Events lets operators look after outbound events; nil when the
	// service sends none.
	Events Events
	// ConsentPages serves the patient's consent pages (package consent) at
	// /consent/{token}; nil: none.
	ConsentPages http.Handler
	// Webhooks counts webhook calls by hook and result; nil for none.
	Webhooks func(hook, result string)
	Logger   *slog.Logger
}

// Server serves the API. Mount more handlers (the dashboard, metrics) with
// Handle before serving.
type Server struct {
	mux    *http.ServeMux
	cfg    Config
	tokens [][]byte
	log    *slog.Logger
}

// New returns a Server with the API's routes.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{mux: http.NewServeMux(), cfg: cfg, log: cfg.Logger}
	for _, t := range cfg.Tokens {
		s.tokens = append(s.tokens, []byte(t))
	}
	for _, rt := range s.routes() {
		h := http.Handler(rt.handler)
		if rt.auth {
			h = s.auth(rt.handler)
		}
		s.mux.Handle(rt.method+" "+rt.path, h)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := s.allowed(r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, &httpError{status: http.StatusMethodNotAllowed, title: "Method not allowed",
				detail: logPath(r) + " answers " + strings.Join(allow, ", ") + ", not " + r.Method})
			return
		}
		writeProblem(w, &httpError{status: http.StatusNotFound, title: "Not found",
			detail: "no route " + r.Method + " " + logPath(r) + "; the API lives under /v1/bookings, /v1/inbox, /v1/events and /v1/event-endpoints"})
	})
	return s
}

// allowed lists the methods the routes answer at r's path, if any.
func (s *Server) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

// route is one operation of the API, with every status it can answer; the
// OpenAPI description is checked against this table.
type route struct {
	method, path string
	auth         bool
	statuses     []int
	handler      http.HandlerFunc
}

// Statuses every call to a /v1/ route can answer besides its own.
var common = []int{http.StatusUnauthorized, http.StatusInternalServerError, http.StatusServiceUnavailable}

func (s *Server) routes() []route {
	withBody := []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity}
	return []route{
		{"POST", "/v1/bookings", true, join([]int{200, 201, 409}, withBody, common), s.createBooking},
		{"GET", "/v1/bookings/{id}", true, join([]int{200, 404}, common), s.getBooking},
		{"GET", "/v1/bookings/{id}/consent", true, join([]int{200, 404}, common), s.getConsent},
		{"PUT", "/v1/bookings/{id}", true, join([]int{200, 404, 409}, withBody, common), s.replaceBooking},
		{"DELETE", "/v1/bookings/{id}", true, join([]int{200, 400, 404, 409, 422}, common), s.cancelBooking},
		{"POST", "/v1/bookings/{id}/treated", true, join([]int{200, 404, 409}, withBody, common), s.treated},
		{"POST", "/v1/bookings/{id}/messages/{step}/{channel}/resend", true, join([]int{200, 404, 409}, withBody, common), s.resend},
		{"GET", "/v1/inbox", true, join([]int{200, 400, 422}, common), s.listInbox},
		{"GET", "/v1/inbox/{id}", true, join([]int{200, 404}, common), s.getInboxItem},
		{"POST", "/v1/inbox/{id}/resolve", true, join([]int{200, 404}, withBody, common), s.resolveInboxItem},
		{"POST", "/v1/inbox/{id}/opt-out", true, join([]int{200, 404, 409}, withBody, common), s.optOutInboxItem},
		{"GET", "/v1/event-endpoints", true, join([]int{200, 404}, common), s.listEndpoints},
		{"POST", "/v1/event-endpoints/{name}/enable", true, join([]int{200, 404}, common), s.enableEndpoint},
		{"POST", "/v1/events/{id}/redeliver", true, join([]int{200, 404}, common), s.redeliverEvent},
		{"POST", "/v1/events/redeliver", true, join([]int{200, 404}, withBody, common), s.redeliverFailed},
		{"GET", "/consent/{token}", false, []int{200, 404, 410, 429, 500}, s.consentPage},
		{"POST", "/consent/{token}", false, []int{200, 303, 400, 403, 404, 410, 422, 429, 500}, s.consentPage},
		{"POST", "/webhooks/twilio/inbound", false, []int{200, 400, 403, 500, 503}, s.twilioInbound},
		{"POST", "/webhooks/twilio/status", false, []int{200, 400, 403, 500, 503}, s.twilioStatus},
		{"GET", "/healthz", false, []int{200}, s.healthz},
		{"GET", "/readyz", false, []int{200, 503}, s.readyz},
		{"GET", "/openapi.yaml", false, []int{200}, serveOpenAPI},
	}
}

func join(lists ...[]int) []int {
	var out []int
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// Handle mounts h at pattern (http.ServeMux syntax).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// logPath is r's path as logs show it: a consent link's token opens the
// patient's page, so it is left out.
func logPath(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/consent/") {
		return "/consent/{token}"
	}
	return r.URL.Path
}

// ServeHTTP serves a request, turning any panic into a 500 problem.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", logPath(r), "panic", v)
			writeProblem(rw, errors.New("internal error"))
		}
		s.log.Debug("http request", "method", r.Method, "path", logPath(r), "status", rw.status, "duration", time.Since(start))
	}()
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	s.mux.ServeHTTP(rw, r)
}

func (s *Server) auth(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		if !strings.EqualFold(scheme, "Bearer") || !s.validToken(strings.TrimSpace(token)) { // the scheme's case does not matter (RFC 7235)
			w.Header().Set("WWW-Authenticate", `Bearer realm="aftercare"`)
			writeProblem(w, aftercare.Errorf(aftercare.EUNAUTHORIZED,
				"send a valid API token as \"Authorization: Bearer <token>\"; the service's operator issues them"))
			return
		}
		next(w, r)
	})
}

func (s *Server) validToken(token string) bool {
	valid := false
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(t, []byte(token)) == 1 {
			valid = true
		}
	}
	return valid && token != ""
}

func (s *Server) createBooking(w http.ResponseWriter, r *http.Request) {
	b, err := decodeBooking(w, r)
	if err != nil {
		writeProblem(w, err)
		return
	}
	tl, created, err := s.cfg.Bookings.Book(r.Context(), b)
	if aftercare.ErrorCode(err) == aftercare.ECONFLICT {
		err = hint(err, "that is PUT /v1/bookings/"+b.ID)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("booking scheduled", "booking", tl.ID, "version", tl.Version, "created", created, "next", next(tl))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/bookings/"+tl.ID)
	}
	writeJSON(w, status, tl)
}

func (s *Server) replaceBooking(w http.ResponseWriter, r *http.Request) {
	b, err := decodeBooking(w, r)
	if err != nil {
		writeProblem(w, err)
		return
	}
	id := r.PathValue("id")
	switch b.ID {
	case "":
		b.ID = id
	case id:
	default:
		writeProblem(w, (aftercare.Fields{{Field: "id", Message: fmt.Sprintf("is %q but the URL names %q; they must match", b.ID, id)}}).Err("the booking is not valid"))
		return
	}
	tl, changed, err := s.cfg.Bookings.Reschedule(r.Context(), b)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("booking rescheduled", "booking", tl.ID, "version", tl.Version, "changed", changed, "next", next(tl))
	writeJSON(w, http.StatusOK, tl)
}

func (s *Server) cancelBooking(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	notify, err := queryBool(q, "notify", "use notify=true to tell the patient, or leave it out")
	if err != nil {
		writeProblem(w, err)
		return
	}
	stop, err := queryBool(q, "stop_aftercare", "use stop_aftercare=true with a reason to stop a treated booking's aftercare")
	if err == nil && stop && notify {
		err = &httpError{status: http.StatusBadRequest, title: "Bad query",
			detail: "notify and stop_aftercare go apart: stopping the aftercare does not tell the patient the visit is cancelled"}
	}
	if err != nil {
		writeProblem(w, err)
		return
	}
	id := r.PathValue("id")
	var tl *aftercare.Timeline
	if stop {
		tl, err = s.cfg.Bookings.StopAftercare(r.Context(), id, q.Get("reason"))
	} else {
		tl, err = s.cfg.Bookings.Cancel(r.Context(), id, notify)
		if aftercare.ErrorCode(err) == aftercare.ECONFLICT {
			err = hint(err, "that is DELETE /v1/bookings/"+id+"?stop_aftercare=true&reason=...")
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("booking cancelled", "booking", tl.ID, "notify", notify, "aftercare_stopped", stop)
	writeJSON(w, http.StatusOK, tl)
}

// queryBool reads a true/false query value; absent is false.
func queryBool(q url.Values, name, fix string) (bool, error) {
	switch v := q.Get(name); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, &httpError{status: http.StatusBadRequest, title: "Bad query", detail: fmt.Sprintf("%s=%s: %s", name, v, fix)}
	}
}

// treatedRequest is the body of POST /v1/bookings/{id}/treated.
type treatedRequest struct {
	TreatedAt string `json:"treated_at"`
}

func (s *Server) treated(w http.ResponseWriter, r *http.Request) {
	var req treatedRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeProblem(w, err)
		return
	}
	at, err := parseTime("treated_at", req.TreatedAt, "the report is not valid")
	if err != nil {
		writeProblem(w, err)
		return
	}
	tl, err := s.cfg.Bookings.Treated(r.Context(), r.PathValue("id"), at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("treatment reported", "booking", tl.ID, "version", tl.Version, "next", next(tl))
	writeJSON(w, http.StatusOK, tl)
}

// resendRequest is the body of POST .../resend.
type resendRequest struct {
	Reason string `json:"reason"`
	By     string `json:"by"`
}

func (s *Server) resend(w http.ResponseWriter, r *http.Request) {
	var req resendRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeProblem(w, err)
		return
	}
	ch := aftercare.Channel(r.PathValue("channel"))
	if !ch.Valid() {
		writeProblem(w, aftercare.Errorf(aftercare.ENOTFOUND, "no channel %q; use sms or email", ch))
		return
	}
	tl, err := s.cfg.Bookings.Resend(r.Context(), r.PathValue("id"), r.PathValue("step"), ch, req.By, req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("message sent again on purpose", "booking", tl.ID, "version", tl.Version, "step", r.PathValue("step"), "channel", ch)
	writeJSON(w, http.StatusOK, tl)
}

func (s *Server) getBooking(w http.ResponseWriter, r *http.Request) {
	tl, err := s.cfg.Bookings.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tl)
}

// consentPage hands the patient's consent page to its handler.
func (s *Server) consentPage(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ConsentPages == nil {
		http.NotFound(w, r)
		return
	}
	s.cfg.ConsentPages.ServeHTTP(w, r)
}

// getConsent exports the patient's acknowledgement of the consent with
// its evidence (typed name, address, browser, the text shown), for the
// clinic's records.
func (s *Server) getConsent(w http.ResponseWriter, r *http.Request) {
	cr, err := s.cfg.Bookings.ConsentRecord(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cr)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Probes serves only /healthz and /readyz, for a process that runs the
// worker without the API.
func Probes(ready func(context.Context) error) http.Handler {
	s := &Server{cfg: Config{Ready: ready}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}

func (s *Server) countWebhook(hook, result string) {
	if s.cfg.Webhooks != nil {
		s.cfg.Webhooks(hook, result)
	}
}

// next describes the timeline's next message for the log: "consent/sms at
// 2026-12-01T08:00:00-05:00".
func next(tl *aftercare.Timeline) string {
	var first *aftercare.Message
	for i, m := range tl.Messages {
		if m.Status == aftercare.StatusScheduled && (first == nil || m.SendAt.Before(first.SendAt)) {
			first = &tl.Messages[i]
		}
	}
	if first == nil {
		return "none"
	}
	return fmt.Sprintf("%s/%s at %s", first.Step, first.Channel, first.SendAt.Format(time.RFC3339))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// fail answers with err as a problem, logging it if it is ours, not the
// caller's.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if aftercare.ErrorCode(err) == aftercare.EINTERNAL {
		s.log.Error("request failed", "method", r.Method, "path", logPath(r), "error", aftercare.Redact(err.Error()))
		if unavailable(err) {
			w.Header().Set("Retry-After", "5")
			err = &httpError{status: http.StatusServiceUnavailable, title: "Service unavailable",
				detail: "the store did not answer in time; nothing was changed that the answer does not show; try again in a few seconds"}
		}
	}
	writeProblem(w, err)
}

// unavailable reports whether err says the store could not be reached or
// did not answer within the request's time.
func unavailable(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

// requestTimeout bounds a call of the clinic API: a store that does not
// answer gets a 503 well before a client or proxy gives up.
const requestTimeout = 5 * time.Second

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // an answer read by people: "&" and "<token>" as typed
	// An error here means the client went away; nothing to do.
	_ = enc.Encode(v)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}
