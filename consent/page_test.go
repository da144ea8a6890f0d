package consent_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/consent"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/messages"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

var dataKey = []byte("0123456789abcdef0123456789abcdef")

type testBundle struct {
	rdb    *redis.Client
	sched  *scheduler.Client
	links  *consent.Links
	srv    *httptest.Server
	clock  *fixture.Clock
	logs   *fixture.Buffer
	client *http.Client
}

// setup serves the consent pages over a scheduler and a sealed store on a
// private Redis, as serve wires them.
func setup(t *testing.T) *testBundle {
	t.Helper()
	tb := &testBundle{rdb: redistest.Client(t), clock: fixture.NewClock(time.Now()), logs: &fixture.Buffer{}}
	store, err := redisstore.NewSealed(tb.rdb, [][]byte{dataKey})
	if err != nil {
		t.Fatal(err)
	}
	protocols, clinic := fixture.Protocols(t), fixture.AnyHour(t)
	tb.sched = scheduler.New(store, taskqueue.New(tb.rdb), scheduler.Config{Protocols: protocols, Clinic: clinic, Now: tb.clock.Now})
	mux := http.NewServeMux()
	tb.srv = httptest.NewServer(mux)
	t.Cleanup(tb.srv.Close)
	if tb.links, err = consent.NewLinks(tb.srv.URL, [][]byte{dataKey}); err != nil {
		t.Fatal(err)
	}
	renderer, err := messages.New(clinic, protocols, messages.Links(tb.links))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(tb.logs, nil))
	mux.Handle(consent.Path, consent.New(consent.Config{Links: tb.links, Bookings: tb.sched, Pages: renderer, Clinic: clinic,
		Expiry: 48 * time.Hour, PublicURL: tb.srv.URL, Now: tb.clock.Now, Logger: log}))
	tb.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return tb
}

const (
	patientName = "Ana María Example-Surname"
	patientIP   = "127.0.0.1"
)

// book books id for locale, the appointment two days away, and returns
// the link to its consent page.
func (tb *testBundle) book(t *testing.T, id, locale string) string {
	t.Helper()
	b := aftercare.Booking{ID: id, Treatment: "botox", AppointmentAt: tb.clock.Now().Add(48 * time.Hour), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Email: "ana@example.com", Timezone: "America/New_York",
			Locale: locale, SMSOptIn: true, EmailOptIn: true}}
	if _, _, err := tb.sched.Book(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	rec, err := tb.sched.Record(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tb.links.ConsentURL(rec)
}

type page struct {
	status int
	header http.Header
	body   string
}

func (tb *testBundle) do(t *testing.T, method, link string, form url.Values, headers ...string) page {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, link, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := tb.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(data)}
}

var hidden = regexp.MustCompile(`name="(form|digest)" value="([^"]*)"`)

// formOf returns the hidden fields of the form on p.
func formOf(t *testing.T, p page) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range hidden.FindAllStringSubmatch(p.body, -1) {
		v.Set(m[1], m[2])
	}
	if v.Get("form") == "" || v.Get("digest") == "" {
		t.Fatalf("no form on the page (%d): %s", p.status, p.body)
	}
	return v
}

// filledForm opens link and fills its form as the patient does: ticked,
// and signed with patientName.
func (tb *testBundle) filledForm(t *testing.T, link string) url.Values {
	t.Helper()
	form := formOf(t, tb.do(t, "GET", link, nil))
	form.Set("read", "yes")
	form.Set("name", patientName)
	return form
}

// TestConsentPage walks the page as a patient does: read, tick, sign, see
// the receipt; the booking shows the acknowledgement, recorded once.
func TestConsentPage(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	link := tb.book(t, "bk_page", "en")

	p := tb.do(t, "GET", link, nil)
	if p.status != 200 || !strings.Contains(p.body, `<html lang="en">`) {
		t.Fatalf("GET = %d: %s", p.status, p.body)
	}
	for _, want := range []string{"Bruising or bleeding", "Infection", "headache-like", "Drooping eyelid or brow", `class="urgent"`,
		"trouble swallowing, breathing or", "myasthenia gravis", "No treatment at all", "Hello Ana", "Example Aesthetics", "I have read and understood"} {
		if !strings.Contains(strings.ReplaceAll(p.body, "\n", " "), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, secret := range []string{"5555550123", "ana@example.com"} {
		if strings.Contains(p.body, secret) {
			t.Errorf("the page shows %q", secret)
		}
	}
	for header, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
		"Cache-Control": "no-store", "X-Frame-Options": "DENY",
	} {
		if !strings.Contains(p.header.Get(header), want) {
			t.Errorf("%s = %q, want %q in it", header, p.header.Get(header), want)
		}
	}

	style := p.body[strings.Index(p.body, "<style>")+len("<style>") : strings.Index(p.body, "</style>")]
	sum := sha256.Sum256([]byte(style))
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
		t.Errorf("the policy %q does not allow the page's own stylesheet", csp)
	}

	// Unticked and unsigned: both errors, nothing recorded.
	form := formOf(t, p)
	p = tb.do(t, "POST", link, form)
	if p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "Tick the box") || !strings.Contains(p.body, "Type your full name") ||
		!strings.Contains(p.body, `aria-invalid="true"`) {
		t.Errorf("POST without tick or name = %d: %s", p.status, p.body)
	}
	form.Set("read", "yes")
	form.Set("name", "Ana \u202eemaNruS")
	if p = tb.do(t, "POST", link, form); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "letters, spaces and punctuation") {
		t.Errorf("POST with a direction override in the name = %d: %s", p.status, p.body)
	}
	form.Set("name", patientName)
	if p = tb.do(t, "POST", link, form); p.status != http.StatusSeeOther {
		t.Fatalf("POST = %d: %s", p.status, p.body)
	}
	p = tb.do(t, "GET", link, nil)
	if p.status != 200 || !strings.Contains(p.body, "You have confirmed") || strings.Contains(p.body, `name="read"`) {
		t.Errorf("after confirming, GET = %d: %s", p.status, p.body)
	}
	// A second submit shows the receipt and records nothing more.
	if p = tb.do(t, "POST", link, form); p.status != http.StatusOK || !strings.Contains(p.body, "You have confirmed") {
		t.Errorf("second POST = %d: %s", p.status, p.body)
	}

	tl, err := tb.sched.Get(ctx, "bk_page")
	if err != nil {
		t.Fatal(err)
	}
	ack := tl.ConsentAcknowledgement
	if ack == nil || ack.Method != aftercare.AckByPage || ack.Digest != form.Get("digest") || ack.ProtocolVersion == "" ||
		ack.TemplateVersion == "" || ack.Locale != "en" || ack.Treatment != "botox" {
		t.Fatalf("acknowledgement = %+v", ack)
	}
	acks := 0
	for _, e := range tl.History {
		if e.Kind == aftercare.EventAcknowledged {
			acks++
		}
	}
	if acks != 1 {
		t.Errorf("%d acknowledgements in the trail, want 1", acks)
	}
	cr, err := tb.sched.ConsentRecord(ctx, "bk_page")
	if err != nil {
		t.Fatal(err)
	}
	if cr.Evidence == nil || cr.Evidence.Name != patientName || cr.Evidence.IP != patientIP || cr.Evidence.UserAgent == "" ||
		!strings.Contains(cr.Evidence.Text, "Drooping eyelid or brow") || aftercare.Digest(aftercare.Outgoing{Text: cr.Evidence.Text}) != ack.Digest {
		t.Errorf("consent record = %+v, want the typed name, address, browser, and the text its digest is of", cr.Evidence)
	}
}

// TestConsentPageInSpanish: a Spanish patient reads and signs in Spanish.
func TestConsentPageInSpanish(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	p := tb.do(t, "GET", tb.book(t, "bk_es", "es"), nil)
	for _, want := range []string{`<html lang="es">`, "inyecciones de toxina botulínica", "He leído y entendido", "Su nombre completo", "Confirmar"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the Spanish page lacks %q", want)
		}
	}
}

// TestConsentFormForgery: a post from another site is refused; a post
// without this page's form token, or of a page whose text changed, is
// asked again and records nothing.
func TestConsentFormForgery(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	link := tb.book(t, "bk_csrf", "en")
	form := tb.filledForm(t, link)

	if p := tb.do(t, "POST", link, form, "Sec-Fetch-Site", "cross-site"); p.status != http.StatusForbidden || !strings.Contains(p.body, "could not be sent") {
		t.Errorf("cross-site POST = %d: %s", p.status, p.body)
	}
	if p := tb.do(t, "POST", link, form, "Sec-Fetch-Site", "", "Origin", "https://evil.example"); p.status != http.StatusForbidden {
		t.Errorf("POST from another origin = %d", p.status)
	}
	forged := url.Values{"read": {"yes"}, "name": {patientName}, "digest": {form.Get("digest")}, "form": {"1764590400.AAAAAAAAAAAAAAAAAAAAAA"}}
	if p := tb.do(t, "POST", link, forged); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "confirm again") {
		t.Errorf("POST with a forged form token = %d: %s", p.status, p.body)
	}
	stale := url.Values{"read": {"yes"}, "name": {patientName}, "digest": {"sha256:0"}, "form": {form.Get("form")}}
	if p := tb.do(t, "POST", link, stale); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "changed") {
		t.Errorf("POST of a text that changed = %d: %s", p.status, p.body)
	}
	if tl, _ := tb.sched.Get(context.Background(), "bk_csrf"); tl.ConsentAcknowledgement != nil {
		t.Errorf("recorded %+v", tl.ConsentAcknowledgement)
	}
}

// TestConsentLinkRefused: an altered or unknown link gets a page that says
// so and shows nothing of any booking; an expired one, or one a
// reschedule retired, says it expired; an address that keeps guessing is
// turned away.
func TestConsentLinkRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	link := tb.book(t, "bk_ref", "en")
	altered := link[:len(link)-3] + "AAA"
	if strings.HasSuffix(link, "AAA") {
		altered = link[:len(link)-3] + "BBB"
	}
	for name, bad := range map[string]string{
		"altered": altered, "unknown booking": strings.Replace(link, "bk_ref", "bk_nope", 1),
		"not a token": tb.srv.URL + consent.Path + "hello", "nested": link + "/x",
	} {
		p := tb.do(t, "GET", bad, nil)
		if p.status != http.StatusNotFound || !strings.Contains(p.body, "This link does not work") || strings.Contains(p.body, "Ana") ||
			strings.Contains(p.body, "botulinum") || strings.Contains(p.body, `name="form"`) {
			t.Errorf("%s link = %d: %s", name, p.status, p.body)
		}
	}
	if p := tb.do(t, "GET", altered, nil, "Accept-Language", "es-ES,es;q=0.9"); !strings.Contains(p.body, "Este enlace no funciona") {
		t.Errorf("a Spanish browser gets: %s", p.body)
	}

	// Once the appointment has begun, the page takes no acknowledgement;
	// one given before stays on its receipt until the link expires, 48
	// hours after the appointment's start.
	signed := tb.book(t, "bk_ref_signed", "en")
	form := tb.filledForm(t, signed)
	if p := tb.do(t, "POST", signed, form); p.status != http.StatusSeeOther {
		t.Fatalf("POST = %d", p.status)
	}
	now := tb.clock.Now()
	tb.clock.Set(now.Add(48*time.Hour + time.Minute))
	if p := tb.do(t, "GET", link, nil); p.status != http.StatusGone || !strings.Contains(p.body, "Confirming here has closed") {
		t.Errorf("after the appointment's start, unsigned = %d: %s", p.status, p.body)
	}
	tb.clock.Set(now.Add(48*time.Hour + 47*time.Hour))
	if p := tb.do(t, "GET", signed, nil); p.status != 200 || !strings.Contains(p.body, "You have confirmed") {
		t.Errorf("before expiry, the receipt = %d", p.status)
	}
	tb.clock.Set(now.Add(48*time.Hour + 49*time.Hour))
	if p := tb.do(t, "GET", signed, nil); p.status != http.StatusGone || !strings.Contains(p.body, "This link has expired") {
		t.Errorf("after expiry = %d: %s", p.status, p.body)
	}
	tb.clock.Set(now)

	// A reschedule makes a new link and retires the old one.
	rec, _ := tb.sched.Record(context.Background(), "bk_ref")
	moved := rec.Booking
	moved.AppointmentAt = moved.AppointmentAt.Add(time.Hour)
	if _, _, err := tb.sched.Reschedule(context.Background(), moved); err != nil {
		t.Fatal(err)
	}
	rec, _ = tb.sched.Record(context.Background(), "bk_ref")
	if p := tb.do(t, "GET", link, nil); p.status != http.StatusNotFound {
		t.Errorf("the link from before the reschedule = %d", p.status)
	}
	if p := tb.do(t, "GET", tb.links.ConsentURL(rec), nil); p.status != 200 {
		t.Errorf("the new link = %d", p.status)
	}

	// A patient who signed keeps their receipt after a reschedule: the old
	// link opens it, and takes no new acknowledgement.
	signedRec, _ := tb.sched.Record(context.Background(), "bk_ref_signed")
	moved = signedRec.Booking
	moved.AppointmentAt = moved.AppointmentAt.Add(time.Hour)
	if _, _, err := tb.sched.Reschedule(context.Background(), moved); err != nil {
		t.Fatal(err)
	}
	if p := tb.do(t, "GET", signed, nil); p.status != 200 || !strings.Contains(p.body, "You have confirmed") || strings.Contains(p.body, `name="form"`) {
		t.Errorf("the signed link after a reschedule = %d: %s", p.status, p.body)
	}
	if p := tb.do(t, "POST", signed, form); p.status != 200 || !strings.Contains(p.body, "You have confirmed") {
		t.Errorf("a post to the signed link after a reschedule = %d", p.status)
	}
	if after, _ := tb.sched.Record(context.Background(), "bk_ref_signed"); after.ConsentAcknowledgement == nil || !after.ConsentAcknowledgement.At.Equal(*signedRec.ConsentAcknowledgedAt) {
		t.Errorf("the acknowledgement changed: %+v", after.ConsentAcknowledgement)
	}

	// Guessing: after 20 unknown links the address is turned away, but a
	// good link is served even so (others may share the address).
	unknown := strings.Replace(link, "bk_ref", "bk_guess", 1)
	for range 20 {
		tb.do(t, "GET", unknown, nil)
	}
	if p := tb.do(t, "GET", unknown, nil); p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" {
		t.Errorf("after many wrong links = %d, Retry-After %q", p.status, p.header.Get("Retry-After"))
	}
	if p := tb.do(t, "GET", tb.links.ConsentURL(rec), nil); p.status != 200 {
		t.Errorf("a good link from that address = %d", p.status)
	}
}

// TestConsentEvidenceSealed: with a data key, no Redis value and no log
// line holds the typed name or the address in plain text, and no log line
// holds the link.
func TestConsentEvidenceSealed(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	link := tb.book(t, "bk_seal", "en")
	form := tb.filledForm(t, link)
	if p := tb.do(t, "POST", link, form, "User-Agent", "TestBrowser/1.0"); p.status != http.StatusSeeOther {
		t.Fatalf("POST = %d: %s", p.status, p.body)
	}
	ctx := context.Background()
	keys, err := tb.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var dump strings.Builder
	for _, k := range keys {
		dump.WriteString(k + "\n")
		switch tb.rdb.Type(ctx, k).Val() {
		case "hash":
			for f, v := range tb.rdb.HGetAll(ctx, k).Val() {
				dump.WriteString(f + "=" + v + "\n")
			}
		case "string":
			dump.WriteString(tb.rdb.Get(ctx, k).Val() + "\n")
		case "zset":
			dump.WriteString(strings.Join(tb.rdb.ZRange(ctx, k, 0, -1).Val(), "\n") + "\n")
		case "set":
			dump.WriteString(strings.Join(tb.rdb.SMembers(ctx, k).Val(), "\n") + "\n")
		case "list":
			dump.WriteString(strings.Join(tb.rdb.LRange(ctx, k, 0, -1).Val(), "\n") + "\n")
		}
	}
	logs := tb.logs.String()
	_, token, _ := strings.Cut(link, consent.Path)
	for _, secret := range []string{"Example-Surname", patientIP, "TestBrowser"} {
		if strings.Contains(dump.String(), secret) {
			t.Errorf("Redis holds %q in plain text", secret)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("a log line holds %q", secret)
		}
	}
	if strings.Contains(logs, token) || !strings.Contains(logs, "consent acknowledged on the page") {
		t.Errorf("logs hold the link, or do not tell of the acknowledgement:\n%s", logs)
	}
}

// TestConsentPageGolden compares the page of a fixed booking, in each
// language, with testdata/page.LOCALE.html. Run with -update after
// changing the page, the protocol's consent text or its wording, and
// review the diff.
func TestConsentPageGolden(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)
	links, err := consent.NewLinks("https://care.example.com", [][]byte{dataKey})
	if err != nil {
		t.Fatal(err)
	}
	protocols, clinic := fixture.Protocols(t), fixture.Clinic(t)
	renderer, err := messages.New(clinic, protocols, messages.Links(links))
	if err != nil {
		t.Fatal(err)
	}
	for _, locale := range aftercare.Locales() {
		t.Run(locale, func(t *testing.T) {
			rec := &aftercare.Record{Fingerprint: "fp", Booking: aftercare.Booking{ID: "bk_1001", Treatment: "botox",
				AppointmentAt: time.Date(2026, 12, 3, 20, 0, 0, 0, time.UTC), DurationMinutes: 30,
				Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Timezone: "America/New_York", Locale: locale, SMSOptIn: true}}}
			rec.ID = rec.Booking.ID
			h := consent.New(consent.Config{Links: links, Bookings: fixed{rec}, Pages: renderer, Clinic: clinic,
				Expiry: 48 * time.Hour, Now: func() time.Time { return now }})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", links.ConsentURL(rec), nil))
			if w.Code != 200 {
				t.Fatalf("GET = %d: %s", w.Code, w.Body)
			}
			fixture.Golden(t, filepath.Join("testdata", "page."+locale+".html"), w.Body.String())
		})
	}
}

// fixed is a store of one booking.
type fixed struct{ rec *aftercare.Record }

func (f fixed) Record(_ context.Context, id string) (*aftercare.Record, error) {
	if id != f.rec.ID {
		return nil, aftercare.Errorf(aftercare.ENOTFOUND, "no booking with id %q", id)
	}
	return f.rec, nil
}

func (f fixed) AcknowledgeOnPage(context.Context, string, string, aftercare.Acknowledgement, aftercare.ConsentEvidence) error {
	return aftercare.Errorf(aftercare.ECONFLICT, "read only")
}
