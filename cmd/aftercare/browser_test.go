package main

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestDashboardInBrowser opens the dashboard in headless Chromium, signs in
// and finds the scheduled tasks of a booking made by the test, shown without
// patient data.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	tb := setup(t)
	tb.mustRequest(t, "POST", "/v1/bookings", bookingBody("bk_dash", time.Now().Add(48*time.Hour)), 201)

	login := base64.StdEncoding.EncodeToString([]byte("ops:ops-secret"))
	var queues, tasks string
	err := chromedp.Run(ctx,
		network.Enable(),
		network.SetExtraHTTPHeaders(network.Headers{"Authorization": "Basic " + login}),
		chromedp.Navigate(tb.url+"/monitoring/"),
		chromedp.WaitVisible(`//*[normalize-space(text())='sms']`, chromedp.BySearch),
		chromedp.OuterHTML("body", &queues, chromedp.ByQuery),
		chromedp.Navigate(tb.url+"/monitoring/queues/sms?status=scheduled"),
		chromedp.WaitVisible(`//*[contains(text(), 'booking bk_dash v1, day1 by sms')]`, chromedp.BySearch),
		chromedp.OuterHTML("body", &tasks, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("dashboard in Chromium: %v", err)
	}
	if !strings.Contains(queues, "email") {
		t.Error("the queues page does not list the email queue")
	}
	for _, secret := range []string{patientTel, "5555550123", patientTo, "Ana"} {
		if strings.Contains(tasks, secret) {
			t.Errorf("the dashboard shows %q", secret)
		}
	}
}

// browser starts Debian's Chromium headless for t, for at most 90 seconds;
// outside CI a machine without it skips the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		skipOutsideCI(t, "no chromium: %v", err)
	}
	// Chromium's helper processes can still write to its profile after it
	// exits, so the profile is removed once they have let go of it.
	profile, err := os.MkdirTemp("", "aftercare-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(profile),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(tab, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		if c := chromedp.FromContext(tab); c != nil && c.Allocator != nil {
			c.Allocator.Wait()
		}
		waitFor(t, 30*time.Second, func() bool { return os.RemoveAll(profile) == nil })
	})
	return ctx
}
