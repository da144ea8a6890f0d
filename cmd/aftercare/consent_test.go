package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/consent"
	"github.com/aftercare/aftercare/internal/fixture"
	"github.com/aftercare/aftercare/redisstore"

	"github.com/redis/go-redis/v9"
)

var consentLink = regexp.MustCompile(`https?://\S+/consent/[A-Za-z0-9_.-]+`)

// linkIn returns the consent link in the consent text sent to the patient
// of booking id.
func linkIn(t *testing.T, tb *testBundle, id string) string {
	t.Helper()
	var link string
	waitFor(t, time.Minute, func() bool {
		for _, m := range tb.twilio.Messages() {
			if l := consentLink.FindString(m.Body); strings.Contains(l, "/consent/"+id+".") {
				link = l
				return true
			}
		}
		return false
	})
	return link
}

// TestConsentPageInBrowser opens the link of the consent text the fake
// Twilio received in headless Chromium at phone width, in each language:
// the page shows every risk of the protocol and the emergency warning; the
// patient ticks, signs and sees the receipt; the booking shows the
// acknowledgement; a second submit changes nothing; an altered and an
// expired link get the error page. The page's screenshot is written to
// AFTERCARE_ARTIFACTS (a temporary directory if unset).
func TestConsentPageInBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	tb := setup(t)
	protocols := fixture.Protocols(t)
	body := bookingBody("bk_consent", time.Now().Add(48*time.Hour))
	tb.mustRequest(t, "POST", "/v1/bookings", body, 201)
	es := bookingBody("bk_consent_es", time.Now().Add(48*time.Hour))
	es["patient"].(map[string]any)["locale"] = "es"
	tb.mustRequest(t, "POST", "/v1/bookings", es, 201)
	link, linkES := linkIn(t, tb, "bk_consent"), linkIn(t, tb, "bk_consent_es")

	for _, c := range []struct{ locale, link string }{{"en", link}, {"es", linkES}} {
		var lang, text string
		if err := chromedp.Run(ctx,
			chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
			chromedp.Navigate(c.link),
			chromedp.WaitVisible("#read", chromedp.ByID),
			chromedp.AttributeValue("html", "lang", &lang, nil, chromedp.ByQuery),
			chromedp.Text("main", &text, chromedp.ByQuery),
		); err != nil {
			t.Fatalf("%s page in Chromium: %v", c.locale, err)
		}
		if lang != c.locale {
			t.Errorf("lang = %q, want %q", lang, c.locale)
		}
		text = strings.Join(strings.Fields(text), " ")
		cons := protocols["botox"].Consent[c.locale]
		for _, r := range cons.Risks {
			if !strings.Contains(text, r.Name) {
				t.Errorf("%s page lacks the risk %q", c.locale, r.Name)
			}
		}
		emergency := map[string]string{"en": "trouble swallowing, breathing or speaking", "es": "dificultad para tragar"}[c.locale]
		if !strings.Contains(text, emergency) {
			t.Errorf("%s page lacks the emergency warning %q:\n%s", c.locale, emergency, text)
		}
		if strings.Contains(text, patientTel) || strings.Contains(text, patientTo) {
			t.Errorf("%s page shows contact details", c.locale)
		}
	}

	// Zoomed to 200% in a 640-pixel window (320 CSS pixels), the page
	// reflows: nothing scrolls sideways.
	var fits bool
	if err := chromedp.Run(ctx,
		chromedp.EmulateViewport(320, 640),
		chromedp.Navigate(link),
		chromedp.WaitVisible("#read", chromedp.ByID),
		chromedp.Evaluate(`document.documentElement.scrollWidth <= document.documentElement.clientWidth`, &fits),
	); err != nil {
		t.Fatal(err)
	}
	if !fits {
		t.Error("at 320 CSS pixels the page scrolls sideways")
	}

	var shot []byte
	var receipt string
	if err := chromedp.Run(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(link),
		chromedp.WaitVisible("#read", chromedp.ByID),
		chromedp.FullScreenshot(&shot, 90),
		chromedp.Click("#read", chromedp.ByID),
		chromedp.SendKeys("#name", "Ana Example", chromedp.ByID),
		chromedp.Click(`button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//*[contains(text(), 'You have confirmed')]`, chromedp.BySearch),
		chromedp.Text("main", &receipt, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("confirming in Chromium: %v", err)
	}
	writeArtifact(t, "consent-page.jpg", shot)
	if !strings.Contains(receipt, "Confirmed on") || !strings.Contains(receipt, "sha256:") {
		t.Errorf("receipt = %s", receipt)
	}

	ack := tb.timeline(t, "bk_consent").ConsentAcknowledgement
	if ack == nil || ack.Method != aftercare.AckByPage || !strings.HasPrefix(ack.Digest, "sha256:") || ack.ProtocolVersion == "" {
		t.Fatalf("GET shows the acknowledgement %+v", ack)
	}
	req, _ := http.NewRequest("POST", link, strings.NewReader(url.Values{"read": {"yes"}, "name": {"Someone Else"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(data), "You have confirmed") {
		t.Errorf("second submit = %d: %s", resp.StatusCode, data)
	}
	if again := tb.timeline(t, "bk_consent").ConsentAcknowledgement; again == nil || !again.At.Equal(ack.At) || again.Digest != ack.Digest {
		t.Errorf("a second submit changed the acknowledgement: %+v", again)
	}
	var exported aftercare.ConsentRecord
	status, data := tb.request(t, "GET", "/v1/bookings/bk_consent/consent", nil)
	if err := json.Unmarshal(data, &exported); status != 200 || err != nil {
		t.Fatalf("GET consent = %d %s", status, data)
	}
	if ev := exported.Evidence; ev == nil || ev.Name != "Ana Example" || ev.IP == "" || ev.Text == "" || exported.Digest != ack.Digest {
		t.Errorf("the export = %s", data)
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"booking", "--url", tb.url, "--token", testToken, "consent", "bk_consent"},
		func(string) (string, bool) { return "", false }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Method:            page", "Typed name:        Ana Example", "The text shown", "Drooping eyelid or brow", ack.Digest} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("booking consent lacks %q:\n%s", want, out.String())
		}
	}

	// An altered link, and the link of a booking whose appointment is
	// long past (made here as the service makes it, with its data key).
	past := bookingBody("bk_consent_old", time.Now().Add(-72*time.Hour))
	tb.mustRequest(t, "POST", "/v1/bookings", past, 201)
	expired := tb.consentURL(t, "bk_consent_old")
	for _, c := range []struct{ link, want string }{
		{link[:len(link)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(link, "AA")], "This link does not work"},
		{expired, "This link has expired"},
	} {
		var text string
		if err := chromedp.Run(ctx, chromedp.Navigate(c.link), chromedp.Text("main", &text, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, c.want) || strings.Contains(text, "Ana") || strings.Contains(text, "botulinum") {
			t.Errorf("%s: %s", c.link, text)
		}
	}
}

// consentURL makes the link to booking id's consent page as the service
// does.
func (tb *testBundle) consentURL(t *testing.T, id string) string {
	t.Helper()
	key, _ := base64.StdEncoding.DecodeString(testDataKey)
	rdb := redis.NewClient(&redis.Options{Addr: tb.redisAddr})
	defer rdb.Close()
	store, err := redisstore.NewSealed(rdb, [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	links, err := consent.NewLinks(tb.url, [][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	return links.ConsentURL(rec)
}

// writeArtifact keeps data as name in AFTERCARE_ARTIFACTS, for CI to keep.
func writeArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	dir := os.Getenv("AFTERCARE_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
