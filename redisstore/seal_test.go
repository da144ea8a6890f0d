package redisstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/redisproc"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
)

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNoPatientDataAtRest writes a booking and a patient's reply through a
// sealed store to a redis-server that appends every write to its AOF file,
// then looks for the patient's number, email, first name and reply in every
// key (as DUMP and as field values) and in the AOF: none may appear.
func TestNoPatientDataAtRest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := redisproc.StartServer(dir, "--appendonly", "yes", "--appendfsync", "always")
	if err != nil {
		t.Skipf("no redis-server: %v", err)
	}
	t.Cleanup(srv.Stop)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	store, err := redisstore.NewSealed(rdb, [][]byte{key(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	secrets := []string{"+15555550123", "5555550123", "maximiliana@example.com", "Maximiliana", "eyelid feels heavy"}
	rec := &aftercare.Record{
		Booking: aftercare.Booking{ID: "bk_sealed", Treatment: "botox", AppointmentAt: time.Now().Add(48 * time.Hour),
			Patient: aftercare.Patient{FirstName: "Maximiliana", Phone: "+15555550123", Email: "maximiliana@example.com",
				Timezone: "UTC", SMSOptIn: true, EmailOptIn: true}},
		Fingerprint: "fp", CreatedAt: time.Now(),
		Timeline: aftercare.Timeline{ID: "bk_sealed", Version: 1, Status: aftercare.BookingScheduled},
	}
	if _, _, err := store.Create(ctx, rec, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, "bk_sealed", func(r *aftercare.Record) (time.Time, error) {
		r.Replies = append(r.Replies, aftercare.Reply{At: time.Now(), Text: "my eyelid feels heavy"})
		return time.Now().Add(time.Hour), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := store.IndexPhone(ctx, "+15555550123", "bk_sealed", time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := store.SetOptOut(ctx, "+15555550123", true, time.Now()); err != nil {
		t.Fatal(err)
	}

	got, err := store.Get(ctx, "bk_sealed")
	if err != nil || got.Booking.Patient.Email != "maximiliana@example.com" || len(got.Replies) != 1 {
		t.Fatalf("read back %+v, %v", got, err)
	}

	var stored bytes.Buffer
	for _, k := range rdb.Keys(ctx, "*").Val() {
		stored.WriteString(k)
		stored.WriteString(rdb.Dump(ctx, k).Val())
		for f, v := range rdb.HGetAll(ctx, k).Val() {
			stored.WriteString(f + v)
		}
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".aof") {
			data, rerr := os.ReadFile(path)
			stored.Write(data)
			return rerr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(stored.Bytes(), []byte("bk_sealed")) {
		t.Fatal("the AOF and keys do not hold the booking at all: the check would prove nothing")
	}
	for _, s := range secrets {
		if bytes.Contains(stored.Bytes(), []byte(s)) {
			t.Errorf("%q is stored in plain text", s)
		}
	}
}

// TestKeyRotation: a new key encrypts while the old one still decrypts;
// once records are rewritten, the old key can go. A record sealed with a
// key that is not configured is an error that says so.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	k1, k2 := key(t), key(t)
	old, _ := redisstore.NewSealed(rdb, [][]byte{k1})
	both, _ := redisstore.NewSealed(rdb, [][]byte{k2, k1})
	next, _ := redisstore.NewSealed(rdb, [][]byte{k2})

	rec := &aftercare.Record{
		Booking: aftercare.Booking{ID: "bk_rot", Treatment: "botox", AppointmentAt: time.Now().Add(48 * time.Hour),
			Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Timezone: "UTC", SMSOptIn: true}},
		Fingerprint: "fp", CreatedAt: time.Now(),
		Timeline: aftercare.Timeline{ID: "bk_rot", Version: 1, Status: aftercare.BookingScheduled},
	}
	if _, _, err := old.Create(ctx, rec, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := next.Get(ctx, "bk_rot"); err == nil || !strings.Contains(err.Error(), "not among the store's data keys") {
		t.Errorf("reading with the wrong key: %v", err)
	}
	if _, err := both.Get(ctx, "bk_rot"); err != nil {
		t.Fatalf("the old key no longer decrypts: %v", err)
	}
	// Any change rewrites the record under the new key.
	if _, err := both.Update(ctx, "bk_rot", func(*aftercare.Record) (time.Time, error) { return time.Now().Add(time.Hour), nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := next.Get(ctx, "bk_rot"); err != nil || got.Booking.Patient.Phone != "+15555550123" {
		t.Errorf("after rotation: %v, %v", got, err)
	}
	if _, err := redisstore.NewSealed(rdb, [][]byte{[]byte("short")}); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

// TestPlainBesideSealed: a store without data keys refuses to create a
// booking on a Redis where a keyed store writes; a plain record that got
// there first is flagged and encrypted in place when the keyed store reads
// it, and reads the same afterwards.
func TestPlainBesideSealed(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	booking := func(id string) *aftercare.Record {
		return &aftercare.Record{
			Booking: aftercare.Booking{ID: id, Treatment: "botox", AppointmentAt: time.Now().Add(48 * time.Hour),
				Patient: aftercare.Patient{FirstName: "Maximiliana", Phone: "+15555550123", Timezone: "UTC", SMSOptIn: true}},
			Fingerprint: "fp", CreatedAt: time.Now(),
			Timeline: aftercare.Timeline{ID: id, Version: 1, Status: aftercare.BookingScheduled},
		}
	}
	plain := redisstore.New(rdb)
	if _, _, err := plain.Create(ctx, booking("bk_early"), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("a plain store alone on its Redis: %v", err)
	}

	k1 := key(t)
	sealed, err := redisstore.NewSealed(rdb, [][]byte{k1})
	if err != nil {
		t.Fatal(err)
	}
	var flagged []string
	sealed.OnPlaintext(func(id string) { flagged = append(flagged, id) })
	if _, _, err := sealed.Create(ctx, booking("bk_sealed"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	late := redisstore.New(rdb) // a backend built without the keys
	if _, _, err := late.Create(ctx, booking("bk_late"), time.Now().Add(time.Hour)); err == nil ||
		!strings.Contains(err.Error(), "encrypted with data keys, and this store has none") {
		t.Errorf("a plain store beside a sealed one created a booking; err = %v", err)
	}
	if n := rdb.Exists(ctx, redisstore.Key("bk_late")).Val(); n != 0 {
		t.Error("the refused booking is stored")
	}

	// A backend with a wrong key is refused; one mid-rotation, the new key
	// first and the old one after, is not.
	wrong, err := redisstore.NewSealed(rdb, [][]byte{key(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := wrong.Create(ctx, booking("bk_wrong"), time.Now().Add(time.Hour)); err == nil ||
		!strings.Contains(err.Error(), "sealed with data keys this store does not have") {
		t.Errorf("a store with another key created a booking; err = %v", err)
	}
	rotating, err := redisstore.NewSealed(rdb, [][]byte{key(t), k1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rotating.Create(ctx, booking("bk_rotating"), time.Now().Add(time.Hour)); err != nil {
		t.Errorf("a store mid-rotation: %v", err)
	}

	for range 2 { // the second read finds it sealed: flagged once
		got, err := sealed.Get(ctx, "bk_early")
		if err != nil || got.Booking.Patient.Phone != "+15555550123" {
			t.Fatalf("read %+v, %v", got, err)
		}
	}
	if len(flagged) != 1 || flagged[0] != "bk_early" {
		t.Errorf("flagged %v, want bk_early once", flagged)
	}
	if v := rdb.HGet(ctx, redisstore.BodyKey("bk_early"), "booking").Val(); v == "" || strings.Contains(v, "+15555550123") {
		t.Errorf("the plain record's booking is %q after the keyed store read it, want it sealed", v)
	}
}
