package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/redisstore"
)

// send claims the consent text and records it sent with a digest, or failed
// with a reason.
func (tb *testBundle) send(t *testing.T, to aftercare.MessageStatus, reason string) {
	t.Helper()
	ctx := context.Background()
	ref := aftercare.MessageRef{BookingID: "bk_1", Version: 1, Step: "consent", Channel: aftercare.SMS}
	if _, _, err := tb.store.Claim(ctx, ref, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	c := ref.Change(aftercare.StatusSending, to, reason)
	c.ProviderID, c.Digest = "SM0123456789abcdef0123456789abcdef", "sha256:"+strings.Repeat("ab", 32)
	c.Event = aftercare.Event{At: time.Now(), Kind: aftercare.EventSend, Step: "consent", Channel: aftercare.SMS, Number: 1, Outcome: aftercare.OutcomeSent}
	if ok, _, err := tb.store.Transition(ctx, c); err != nil || !ok {
		t.Fatalf("Transition = %v, %v", ok, err)
	}
}

// sameExpiry checks that bk_1's record and body expire at the same
// instant, about an hour from now.
func (tb *testBundle) sameExpiry(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	at, bodyAt := tb.rdb.PExpireTime(ctx, redisstore.Key("bk_1")).Val(), tb.rdb.PExpireTime(ctx, redisstore.BodyKey("bk_1")).Val()
	if in := time.Until(time.UnixMilli(at.Milliseconds())); in < 59*time.Minute || in > time.Hour || bodyAt != at {
		t.Errorf("the record expires in %s, at %d ms, its body at %d ms; want both in about an hour", in, at.Milliseconds(), bodyAt.Milliseconds())
	}
}

// TestRecordLayout: a record's short fields stay in a hash Redis keeps
// compact, however long the values in its body grow, and both hashes
// expire together.
func TestRecordLayout(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.create(t)
	tb.send(t, aftercare.StatusFailed, "the provider said no, at some length, and with a reason longer than sixty-four bytes")

	key, body := redisstore.Key("bk_1"), redisstore.BodyKey("bk_1")
	if enc := tb.rdb.ObjectEncoding(ctx, key).Val(); enc != "listpack" {
		t.Errorf("record encoded as %s, want listpack", enc)
	}
	for _, f := range []string{"booking", "plan", "h:1", "e:consent:sms", "d:consent:sms"} {
		if tb.rdb.HExists(ctx, key, f).Val() || !tb.rdb.HExists(ctx, body, f).Val() {
			t.Errorf("field %s not in the body alone", f)
		}
	}
	tb.sameExpiry(t)
	got, err := tb.store.Get(ctx, "bk_1")
	if err != nil {
		t.Fatal(err)
	}
	if m := got.Messages[0]; m.Status != aftercare.StatusFailed || !strings.HasPrefix(m.Error, "the provider said no") || !strings.HasPrefix(m.Digest, "sha256:abab") {
		t.Errorf("message = %+v", m)
	}
	if len(got.History) != 1 || got.History[0].Status != aftercare.StatusFailed {
		t.Errorf("history = %+v", got.History)
	}

	// States reads the record's own hash alone.
	tl, err := tb.store.States(ctx, "bk_1")
	if err != nil || tl.Version != 1 || tl.Status != aftercare.BookingScheduled || len(tl.Messages) != 2 {
		t.Fatalf("States = %+v, %v", tl, err)
	}
	for step, want := range map[string]aftercare.MessageStatus{"consent": aftercare.StatusFailed, "reminder": aftercare.StatusSkipped} {
		if m, ok := tl.Message(step, aftercare.SMS); !ok || m.Status != want {
			t.Errorf("States: %s = %+v, %v; want %s", step, m, ok, want)
		}
	}
	if _, err := tb.store.States(ctx, "nope"); aftercare.ErrorCode(err) != aftercare.ENOTFOUND {
		t.Errorf("States(missing) = %v, want ENOTFOUND", err)
	}
}

// TestEarlierReleaseRecord: a record kept whole in one hash, as earlier
// releases wrote it, is read as it is, gains the entries and errors of its
// changes in the body (which expires with it), hands its whole trail to
// the event relay, and is split at its next update.
func TestEarlierReleaseRecord(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	tb.rec.History = []aftercare.Event{{At: time.Now(), Kind: aftercare.EventBooked, Detail: "booked"}}
	tb.create(t)
	key, body := redisstore.Key("bk_1"), redisstore.BodyKey("bk_1")
	whole := tb.rdb.HGetAll(ctx, body).Val()
	whole["e:consent:sms"] = "an error of an earlier run"
	tb.rdb.HSet(ctx, key, whole)
	tb.rdb.Del(ctx, body)

	got, err := tb.store.Get(ctx, "bk_1")
	if err != nil || got.Booking.Patient.Phone != "+15555550123" || len(got.History) != 1 || got.Messages[0].Error != "an error of an earlier run" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	tb.send(t, aftercare.StatusSent, "")
	if tb.rdb.HExists(ctx, key, "e:consent:sms").Val() {
		t.Error("the earlier error is still in the record")
	}
	if !tb.rdb.HExists(ctx, body, "h:2").Val() {
		t.Error("the new trail entry is not in the body")
	}
	tb.sameExpiry(t)
	got, err = tb.store.Get(ctx, "bk_1")
	if err != nil || got.Messages[0].Status != aftercare.StatusSent || got.Messages[0].Error != "" || len(got.History) != 2 {
		t.Fatalf("after the send: %+v, %v", got, err)
	}
	entries, first, _, err := tb.store.Unrelayed(ctx, "bk_1")
	if err != nil || first != 1 || len(entries) != 2 || entries[0].Detail != "booked" || entries[1].Outcome != aftercare.OutcomeSent {
		t.Errorf("Unrelayed = %+v, %d, %v", entries, first, err)
	}

	if _, err := tb.store.Update(ctx, "bk_1", func(*aftercare.Record) (time.Time, error) { return time.Now().Add(time.Hour), nil }); err != nil {
		t.Fatal(err)
	}
	if enc := tb.rdb.ObjectEncoding(ctx, key).Val(); enc != "listpack" || tb.rdb.HExists(ctx, key, "booking").Val() {
		t.Errorf("after an update the record is %s, with its booking: %v", enc, tb.rdb.HExists(ctx, key, "booking").Val())
	}
	if again, err := tb.store.Get(ctx, "bk_1"); err != nil || len(again.History) != 2 || again.Messages[0].Digest != got.Messages[0].Digest {
		t.Errorf("after an update: %+v, %v", again, err)
	}
}
