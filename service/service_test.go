package service_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/internal/redistest"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/service"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
}

// TestConnectBooksAsTheService: a backend that connects with the service's
// environment writes what the service would: the contact details sealed
// under the data key, and the booking marked for the event endpoint.
func TestConnectBooksAsTheService(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bookings, err := service.Connect(ctx, env(map[string]string{
		"REDIS_URL":                "redis://" + addr,
		"AFTERCARE_DATA_KEY":       base64.StdEncoding.EncodeToString(k),
		"AFTERCARE_WEBHOOK_URL":    "http://127.0.0.1:9/hooks",
		"AFTERCARE_WEBHOOK_SECRET": "whsec_" + base64.StdEncoding.EncodeToString(k),
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer bookings.Close()

	tl, created, err := bookings.Book(ctx, aftercare.Booking{
		ID: "bk_go", Treatment: "botox", AppointmentAt: time.Now().Add(72 * time.Hour).Truncate(time.Minute), DurationMinutes: 30,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550123", Timezone: "America/New_York", SMSOptIn: true},
	})
	if err != nil || !created || len(tl.Messages) == 0 {
		t.Fatalf("Book = %v, %v, %v", tl, created, err)
	}

	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	stored := rdb.HGet(ctx, redisstore.BodyKey("bk_go"), "booking").Val()
	if !strings.HasPrefix(stored, "k1:") || strings.Contains(stored, "+15555550123") {
		t.Errorf("the booking is stored as %.40q..., want it sealed", stored)
	}
	keyed, err := redisstore.NewSealed(rdb, [][]byte{k})
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := keyed.Get(ctx, "bk_go"); err != nil || rec.Booking.Patient.Phone != "+15555550123" {
		t.Errorf("the service's store reads %+v, %v", rec, err)
	}
	due, err := keyed.DueEvents(ctx, 10)
	if err != nil || len(due) != 1 || due[0].BookingID != "bk_go" {
		t.Errorf("events due = %+v, %v; want bk_go's booking.scheduled marked for the relay", due, err)
	}

	// A visit that began half an hour ago: its consent can no longer go,
	// and the clinic inbox hears of it, as through the service's API.
	if _, _, err := bookings.Book(ctx, aftercare.Booking{
		ID: "bk_late", Treatment: "botox", AppointmentAt: time.Now().Add(-30 * time.Minute).Truncate(time.Minute), DurationMinutes: 60,
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "+15555550124", Timezone: "America/New_York", SMSOptIn: true},
	}); err != nil {
		t.Fatal(err)
	}
	items, _, err := keyed.InboxItems(ctx, aftercare.InboxFilter{}, "", 10)
	if err != nil || len(items) != 1 || items[0].BookingID != "bk_late" {
		t.Errorf("inbox = %+v, %v; want an item for bk_late's expired consent", items, err)
	}
}

// TestConnectErrors: each way a backend's setting can be wrong is one
// error that names the setting and never quotes a password.
func TestConnectErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, c := range []struct {
		name string
		vars map[string]string
		want string
	}{
		{"no Redis", map[string]string{}, "REDIS_URL is not set"},
		{"no scheme", map[string]string{"REDIS_URL": "localhost:6379"}, "REDIS_URL: has no scheme"},
		{"nobody there", map[string]string{"REDIS_URL": "redis://:s3cret@" + closed}, "REDIS_URL: Redis does not answer"},
		{"bad key", map[string]string{"REDIS_URL": "redis://" + closed, "AFTERCARE_DATA_KEY": "short"}, "AFTERCARE_DATA_KEY"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := service.Connect(ctx, env(c.vars))
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Connect = %v, want an error with %q", err, c.want)
			}
		})
	}
}
