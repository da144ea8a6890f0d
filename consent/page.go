package consent

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/language"

	"github.com/aftercare/aftercare"
)

// Bookings is what the page needs of the scheduler.
type Bookings interface {
	Record(ctx context.Context, id string) (*aftercare.Record, error)
	AcknowledgeOnPage(ctx context.Context, id, fingerprint string, ack aftercare.Acknowledgement, ev aftercare.ConsentEvidence) error
}

// Pages renders a booking's consent text, and a time in a locale's words.
type Pages interface {
	ConsentPage(rec *aftercare.Record) (aftercare.ConsentPage, error)
	When(locale string, t time.Time) string
}

// Config holds the page's dependencies.
type Config struct {
	Links    *Links
	Bookings Bookings
	Pages    Pages
	Clinic   aftercare.Clinic
	// Expiry is how long after the appointment's start its link works.
	Expiry time.Duration
	// PublicURL is the service's external address: a form posted from it
	// is not cross-origin, whatever Host a proxy passes on.
	PublicURL string
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	Now            func() time.Time
	Logger         *slog.Logger
}

// Limits of the page.
const (
	// maxWrong links an address may try in guessWindow before it is
	// turned away until the window ends.
	maxWrong    = 20
	guessWindow = 10 * time.Minute
	// formAge is how long a form stays good to post.
	formAge = 4 * time.Hour
	// maxName bounds the typed name, in characters; maxForm the body.
	maxName = 200
	maxForm = 16 << 10
)

//go:embed page.html
var pageSource string

//go:embed style.css
var style string

var pageTemplate = template.Must(template.New("page").Parse(pageSource))

// The page's security headers. Its one stylesheet is inline and allowed by
// its hash; it loads nothing, runs no script, and posts only to itself.
var (
	styleHash = sha256.Sum256([]byte(style))
	headers   = map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(styleHash[:]) +
			"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"Referrer-Policy":        "no-referrer",
		"X-Robots-Tag":           "noindex, nofollow",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
		"Content-Type":           "text/html; charset=utf-8",
	}
)

// Handler serves the consent pages at Path: GET shows the page (or, once
// acknowledged, the receipt), POST records the acknowledgement.
type Handler struct {
	cfg     Config
	guesses *guesses
	cross   *http.CrossOriginProtection
	log     *slog.Logger
}

// New returns the consent page handler.
func New(cfg Config) *Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, guesses: newGuesses(maxWrong, guessWindow), cross: http.NewCrossOriginProtection(), log: cfg.Logger}
	if u, err := url.Parse(cfg.PublicURL); err == nil && u.Host != "" {
		if err := h.cross.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			h.log.Error("consent page: the public URL is not an origin; forms are checked against the Host header alone", "error", err)
		}
	}
	return h
}

// view is what page.html shows.
type view struct {
	Lang, Title string
	W           words
	MaxName     int
	Clinic      aftercare.Clinic
	Style       template.CSS
	Call        string
	// An error page's text.
	Message string
	// The consent text, and on the form page the form.
	Blocks            []aftercare.Block
	Notices           []string
	Form              bool
	FormToken, Digest string
	Name              string
	Ticked            bool
	Errors            []fieldError
	Receipt           *receipt
}

type fieldError struct{ Field, Text string }

type receipt struct {
	When, How, Reference, Version string
	// Text: the words acknowledged are kept, and follow.
	Text bool
}

// FieldError is the error of field, if any.
func (v *view) FieldError(field string) string {
	for _, e := range v.Errors {
		if e.Field == field {
			return e.Text
		}
	}
	return ""
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range headers {
		w.Header().Set(k, v)
	}
	token, ok := strings.CutPrefix(r.URL.Path, Path)
	if !ok || strings.Contains(token, "/") {
		h.fail(w, r, http.StatusNotFound, failInvalid)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.serve(w, r, token, nil)
	case http.MethodPost:
		if err := h.cross.Check(r); err != nil {
			h.log.Info("consent form posted from another site: refused")
			h.fail(w, r, http.StatusForbidden, failForeign)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			h.fail(w, r, http.StatusBadRequest, failBroken)
			return
		}
		h.serve(w, r, token, r.PostForm)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		h.fail(w, r, http.StatusMethodNotAllowed, failBroken)
	}
}

// serve answers a request for token's page; form is the posted form, nil
// for a GET.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, token string, form url.Values) {
	now := h.cfg.Now()
	addr := clientAddr(r, h.cfg.TrustedProxies)
	rec, ok := h.resolve(w, r, token, addr, now)
	if !ok {
		return
	}
	if ack := rec.ConsentAcknowledgement; ack != nil && ack.Method == aftercare.AckByPage {
		h.receipt(w, rec)
		return
	}
	if !now.Before(rec.Booking.AppointmentAt) || rec.Booking.TreatedAt != nil {
		h.log.Info("consent link refused", "booking", rec.ID, "reason", string(failClosed))
		h.fail(w, r, http.StatusGone, failClosed)
		return
	}
	page, err := h.cfg.Pages.ConsentPage(rec)
	if err != nil {
		h.log.Error("consent page", "booking", rec.ID, "error", err)
		h.fail(w, r, http.StatusInternalServerError, failBroken)
		return
	}
	v := h.view(page.Locale, page.Title())
	if form == nil {
		h.form(w, &v, rec, page, token, now, http.StatusOK)
		return
	}
	if !h.readForm(&v, form, token, page, now) {
		h.form(w, &v, rec, page, token, now, http.StatusUnprocessableEntity)
		return
	}
	h.acknowledge(w, r, token, rec, page, v.Name, addr, now)
}

// resolve returns the booking of token's link, or answers the request with
// why it is refused and reports false. An address that has tried too many
// wrong links is turned away unless its link is good.
func (h *Handler) resolve(w http.ResponseWriter, r *http.Request, token string, addr netip.Addr, now time.Time) (*aftercare.Record, bool) {
	wait := h.guesses.blocked(addr, now)
	if _, ok := BookingOf(token); !ok && wait > 0 {
		h.busy(w, r, wait) // no need to look: not even shaped like a link
		return nil, false
	}
	rec, status, why := h.find(r.Context(), token, now)
	switch {
	case why != "" && wait > 0: // a good link is served even so
		h.busy(w, r, wait)
		return nil, false
	case why == failUnknown:
		h.guesses.miss(addr, now)
		h.log.Info("consent link refused", "reason", string(why))
		h.fail(w, r, status, why)
		return nil, false
	case why != "":
		h.log.Info("consent link refused", "booking", rec.ID, "reason", string(why))
		h.fail(w, r, status, why)
		return nil, false
	}
	return rec, true
}

// readForm puts the posted form into v, with a notice for a form too old
// or a text that changed since it was shown, and an error for each field
// left wrong. It reports whether the acknowledgement can be recorded.
func (h *Handler) readForm(v *view, form url.Values, token string, page aftercare.ConsentPage, now time.Time) bool {
	v.Name, v.Ticked = strings.TrimSpace(form.Get("name")), form.Get("read") == "yes"
	switch {
	case !h.cfg.Links.validForm(token, form.Get("form"), now, formAge):
		v.Notices = append(v.Notices, v.W.FormExpired)
	case form.Get("digest") != page.Digest():
		v.Notices = append(v.Notices, v.W.Changed)
	}
	if !v.Ticked {
		v.Errors = append(v.Errors, fieldError{"read", v.W.NeedTick})
	}
	if msg := v.W.nameProblem(v.Name); msg != "" {
		v.Errors = append(v.Errors, fieldError{"name", msg})
	}
	return len(v.Notices) == 0 && len(v.Errors) == 0
}

// acknowledge records that name acknowledged page on the booking, with
// the evidence of the request, and sends the browser to the receipt.
func (h *Handler) acknowledge(w http.ResponseWriter, r *http.Request, token string, rec *aftercare.Record, page aftercare.ConsentPage, name string, addr netip.Addr, now time.Time) {
	ack := aftercare.Acknowledgement{At: now, Digest: page.Digest(), Treatment: rec.Booking.Treatment,
		ProtocolVersion: page.ProtocolVersion, TemplateVersion: page.TemplateVersion, Locale: page.Locale}
	evidence := aftercare.ConsentEvidence{Name: name, UserAgent: strings.ToValidUTF8(r.UserAgent()[:min(len(r.UserAgent()), 512)], ""), Text: page.Text,
		Fingerprint: rec.Fingerprint}
	if addr.IsValid() {
		evidence.IP = addr.String()
	}
	if err := h.cfg.Bookings.AcknowledgeOnPage(r.Context(), rec.ID, rec.Fingerprint, ack, evidence); err != nil {
		if aftercare.ErrorCode(err) == aftercare.ECONFLICT || aftercare.ErrorCode(err) == aftercare.ENOTFOUND {
			h.log.Info("consent not recorded: the booking changed", "booking", rec.ID)
			h.fail(w, r, http.StatusGone, failExpired)
			return
		}
		h.log.Error("consent not recorded", "booking", rec.ID, "error", err)
		h.fail(w, r, http.StatusInternalServerError, failBroken)
		return
	}
	h.log.Info("consent acknowledged on the page", "booking", rec.ID, "digest", ack.Digest)
	// The receipt, on a page that can be reloaded. The link relative to
	// itself: right behind a proxy that serves it under another path.
	w.Header().Set("Location", token)
	w.WriteHeader(http.StatusSeeOther)
}

func (h *Handler) busy(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
	h.fail(w, r, http.StatusTooManyRequests, failBusy)
}

// failure is why a page cannot be shown.
type failure string

const (
	failUnknown failure = "not a link of a booking" // counts as a guess
	failInvalid failure = "not this booking's link" // an altered link, or one a change retired
	failExpired failure = "expired"
	failClosed  failure = "the appointment has begun"
	failBusy    failure = "too many wrong links"
	failForeign failure = "posted from another site"
	failBroken  failure = "error"
)

// find returns the booking of token if the link is good now, or the status
// and reason to refuse it. A wrong, altered or retired link gets the same
// page; only the holder of a real one is told it expired.
func (h *Handler) find(ctx context.Context, token string, now time.Time) (*aftercare.Record, int, failure) {
	id, ok := BookingOf(token)
	if !ok {
		return nil, http.StatusNotFound, failUnknown
	}
	rec, err := h.cfg.Bookings.Record(ctx, id)
	switch {
	case aftercare.ErrorCode(err) == aftercare.ENOTFOUND:
		return nil, http.StatusNotFound, failUnknown
	case err != nil:
		h.log.Error("consent page: reading the booking", "booking", id, "error", err)
		return nil, http.StatusInternalServerError, failBroken
	case !h.cfg.Links.Valid(token, rec) && !h.cfg.Links.ValidSigned(token, rec): // the second opens the receipt alone (see serve)
		return rec, http.StatusNotFound, failInvalid
	case rec.Status == aftercare.BookingCancelled, now.After(rec.Booking.AppointmentAt.Add(h.cfg.Expiry)):
		return rec, http.StatusGone, failExpired
	}
	return rec, 0, ""
}

func (h *Handler) view(locale, title string) view {
	w, loc := wordsIn(locale)
	return view{Lang: loc, Title: title, W: w, Clinic: h.cfg.Clinic, Style: template.CSS(style), MaxName: maxName,
		Call: fmt.Sprintf(w.Call, h.cfg.Clinic.Name, h.cfg.Clinic.Phone)}
}

func (h *Handler) form(w http.ResponseWriter, v *view, rec *aftercare.Record, page aftercare.ConsentPage, token string, now time.Time, status int) {
	v.Blocks, v.Form = page.Blocks, true
	v.FormToken, v.Digest = h.cfg.Links.formToken(token, now), page.Digest()
	if ack := rec.ConsentAcknowledgement; ack != nil { // a YES by SMS: the page may still be signed
		v.Notices = append([]string{fmt.Sprintf(v.W.SMSDone, h.cfg.Pages.When(v.Lang, ack.At))}, v.Notices...)
	}
	h.write(w, status, v)
}

// receipt shows what the patient acknowledged on the page, in the words and
// the language they read, whatever the protocol says now.
func (h *Handler) receipt(w http.ResponseWriter, rec *aftercare.Record) {
	ack := rec.ConsentAcknowledgement
	var shown aftercare.ConsentPage
	if rec.Evidence != nil {
		shown.Blocks = aftercare.Blocks(rec.Evidence.Text)
	}
	v := h.view(ack.Locale, shown.Title())
	v.Receipt = &receipt{When: h.cfg.Pages.When(v.Lang, ack.At), How: v.W.Page, Reference: ack.Digest,
		Version: ack.Treatment + " " + ack.ProtocolVersion + ", " + ack.TemplateVersion, Text: rec.Evidence != nil}
	for _, b := range shown.Blocks {
		if b.Heading > 0 { // under the receipt's heading and "What you confirmed"
			b.Heading += 2
		}
		v.Blocks = append(v.Blocks, b)
	}
	h.write(w, http.StatusOK, &v)
}

// fail shows the page of a failure, in the language the browser asks for.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, why failure) {
	v := h.view(browserLocale(r), "")
	switch why {
	case failUnknown, failInvalid:
		v.Title, v.Message = v.W.Invalid, v.W.InvalidText
	case failClosed:
		v.Title, v.Message = v.W.Closed, v.W.ClosedText
	case failExpired:
		v.Title, v.Message = v.W.Expired, v.W.ExpiredTxt
	case failBusy:
		v.Title, v.Message = v.W.Busy, v.W.BusyText
	case failForeign:
		v.Title, v.Message = v.W.Refused, v.W.RefusedText
	default:
		v.Title, v.Message = v.W.Broken, v.W.BrokenText
	}
	h.write(w, status, &v)
}

func (h *Handler) write(w http.ResponseWriter, status int, v *view) {
	w.WriteHeader(status)
	if err := pageTemplate.Execute(w, v); err != nil {
		h.log.Error("consent page: writing", "error", err)
	}
}

// matcher picks a page language, the default first.
var matcher = func() language.Matcher {
	var tags []language.Tag
	for _, l := range aftercare.Locales() {
		tags = append(tags, language.Make(l))
	}
	return language.NewMatcher(tags)
}()

// browserLocale is the page language r's Accept-Language prefers.
func browserLocale(r *http.Request) string {
	tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	_, i, _ := matcher.Match(tags...)
	return aftercare.Locales()[i]
}
