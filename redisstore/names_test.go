package redisstore_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
)

// stored is every key, field and value in Redis, as one buffer.
func stored(t *testing.T, rdb *redis.Client) []byte {
	t.Helper()
	ctx := context.Background()
	var b bytes.Buffer
	for _, k := range rdb.Keys(ctx, "*").Val() {
		b.WriteString(k + "\n")
		switch rdb.Type(ctx, k).Val() {
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				b.WriteString(f + "\n" + v + "\n")
			}
		case "zset":
			for _, m := range rdb.ZRange(ctx, k, 0, -1).Val() {
				b.WriteString(m + "\n")
			}
		case "string":
			b.WriteString(rdb.Get(ctx, k).Val() + "\n")
		}
	}
	return b.Bytes()
}

// TestDigestNeedsTheKey: with a data key, the opt-out list and the number
// index name a number by a digest that whoever reads Redis cannot recompute
// from the number: no common hash of any way of writing the number, in hex
// or base64, whole or cut short, appears anywhere in Redis. A store with
// another key names the same number differently, and does not find it.
func TestDigestNeedsTheKey(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	store, err := redisstore.NewSealed(rdb, [][]byte{key(t)})
	if err != nil {
		t.Fatal(err)
	}
	const phone = "+15555550123"
	if err := store.SetOptOut(ctx, phone, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := store.IndexPhone(ctx, phone, "bk_1", time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if out, err := store.OptedOut(ctx, phone); err != nil || !out {
		t.Fatalf("OptedOut = %v, %v; want true", out, err)
	}
	if ids, err := store.Bookings(ctx, phone); err != nil || !slices.Equal(ids, []string{"bk_1"}) {
		t.Fatalf("Bookings = %v, %v", ids, err)
	}

	all := stored(t, rdb)
	if !bytes.Contains(all, []byte("aftercare:optout")) || !bytes.Contains(all, []byte("bk_1")) {
		t.Fatalf("Redis holds neither the opt-out nor the index: the check would prove nothing:\n%s", all)
	}
	for _, number := range []string{phone, "15555550123", "5555550123", "tel:" + phone} {
		for _, sum := range [][]byte{sha256sum(number), sha1sum(number), md5sum(number), sha512sum(number)} {
			for _, enc := range []string{hex.EncodeToString(sum), base64.StdEncoding.EncodeToString(sum), base64.RawURLEncoding.EncodeToString(sum)} {
				if bytes.Contains(all, []byte(enc[:16])) {
					t.Errorf("Redis holds %s..., a hash of %q anyone can recompute", enc[:16], number)
				}
			}
		}
		if bytes.Contains(all, []byte(number)) {
			t.Errorf("Redis holds the number %q", number)
		}
	}

	other, _ := redisstore.NewSealed(rdb, [][]byte{key(t)})
	if out, err := other.OptedOut(ctx, phone); err != nil || out {
		t.Errorf("a store with another key found the opt-out: %v, %v", out, err)
	}
}

func sha256sum(s string) []byte { v := sha256.Sum256([]byte(s)); return v[:] }
func sha512sum(s string) []byte { v := sha512.Sum512([]byte(s)); return v[:] }
func sha1sum(s string) []byte   { v := sha1.Sum([]byte(s)); return v[:] }
func md5sum(s string) []byte    { v := md5.Sum([]byte(s)); return v[:] }

// TestRekey walks the life of an opt-out through the data as earlier
// versions left it (plain SHA-256 names) and a key rotation: STOP is
// honoured at every step, and after Rekey the old key can go.
func TestRekey(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	k1, k2 := key(t), key(t)
	legacy := redisstore.New(rdb) // no key: the names earlier versions wrote
	first, _ := redisstore.NewSealed(rdb, [][]byte{k1})
	both, _ := redisstore.NewSealed(rdb, [][]byte{k2, k1})
	next, _ := redisstore.NewSealed(rdb, [][]byte{k2})

	const booked, unbooked, later = "+15555550101", "+15555550102", "+15555550103"
	rec := &aftercare.Record{
		Booking: aftercare.Booking{ID: "bk_a", Treatment: "botox", AppointmentAt: time.Now().Add(48 * time.Hour),
			Patient: aftercare.Patient{FirstName: "Ana", Phone: booked, Timezone: "UTC", SMSOptIn: true}},
		Fingerprint: "fp", CreatedAt: time.Now(),
		Timeline: aftercare.Timeline{ID: "bk_a", Version: 1, Status: aftercare.BookingScheduled},
	}
	if _, _, err := legacy.Create(ctx, rec, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{booked, unbooked} {
		if err := legacy.SetOptOut(ctx, p, true, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := legacy.IndexPhone(ctx, booked, "bk_a", time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	optedOut := func(s *redisstore.Store, phones ...string) {
		t.Helper()
		for _, p := range phones {
			if out, err := s.OptedOut(ctx, p); err != nil || !out {
				t.Errorf("%s...: OptedOut = %v, %v; want true", p[:8], out, err)
			}
		}
	}

	// A key is set: the legacy names are still read.
	optedOut(first, booked, unbooked)
	if ids, _ := first.Bookings(ctx, booked); !slices.Equal(ids, []string{"bk_a"}) {
		t.Errorf("Bookings under the legacy name = %v", ids)
	}
	rep, err := first.Rekey(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := redisstore.RekeyReport{Bookings: 1, Resealed: 1, OptOuts: 1, Indexes: 1, Unnamed: 1}
	if rep != want {
		t.Errorf("first Rekey = %+v, want %+v", rep, want)
	}
	if again, err := first.Rekey(ctx, nil); err != nil || again != (redisstore.RekeyReport{Bookings: 1, Unnamed: 1}) {
		t.Errorf("Rekey run again = %+v, %v; want nothing more to do", again, err)
	}
	optedOut(first, booked, unbooked)
	if n := rdb.HLen(ctx, "aftercare:optout").Val(); n != 2 {
		t.Errorf("the opt-out list has %d entries, want 2: the renamed one and the unnamed one", n)
	}

	// A number replies STOP under the first key, with no booking left.
	if err := first.SetOptOut(ctx, later, true, time.Now()); err != nil {
		t.Fatal(err)
	}

	// Rotation: the new key writes, both read; STOP holds throughout.
	optedOut(both, booked, unbooked, later)
	if rep, err = both.Rekey(ctx, nil); err != nil {
		t.Fatal(err)
	}
	want = redisstore.RekeyReport{Bookings: 1, Resealed: 1, OptOuts: 2, Indexes: 1, Unnamed: 1}
	if rep != want {
		t.Errorf("rotation Rekey = %+v, want %+v", rep, want)
	}

	// The old key is gone.
	optedOut(next, booked, unbooked, later)
	if ids, _ := next.Bookings(ctx, booked); !slices.Equal(ids, []string{"bk_a"}) {
		t.Errorf("Bookings after rotation = %v", ids)
	}
	if got, err := next.Get(ctx, "bk_a"); err != nil || got.Booking.Patient.Phone != booked {
		t.Errorf("the booking after rotation: %v, %v", got, err)
	}
	if err := next.SetOptOut(ctx, booked, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	if out, _ := next.OptedOut(ctx, booked); out {
		t.Error("START did not opt the number back in")
	}
}

// TestRekeyNamesWhatItCannotRead: an opt-out sealed under a key the store
// was not given is not honoured, so Rekey reports it rather than passing
// over it.
func TestRekeyNamesWhatItCannotRead(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	old, _ := redisstore.NewSealed(rdb, [][]byte{key(t)})
	next, _ := redisstore.NewSealed(rdb, [][]byte{key(t)})
	if err := old.SetOptOut(ctx, "+15555550104", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	rep, err := next.Rekey(ctx, nil)
	if err != nil || rep.Unreadable != 1 {
		t.Errorf("Rekey = %+v, %v; want one unreadable opt-out", rep, err)
	}
}
