package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
	"github.com/aftercare/aftercare/taskqueue"
)

// newExampleClient returns a Client on an in-memory Redis whose clock reads
// 24 November 2026, noon in New York, and a function to stop it.
func newExampleClient() (*scheduler.Client, func()) {
	mr, _ := miniredis.Run() // any Redis will do
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	protocols, _ := protocol.Builtin()
	clinic, _ := config.LoadClinic("") // the built-in example clinic
	client := scheduler.New(redisstore.New(rdb), taskqueue.New(rdb), scheduler.Config{
		Protocols: protocols,
		Clinic:    clinic,
		Now:       func() time.Time { return time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC) },
	})
	return client, func() { rdb.Close(); mr.Close() }
}

func exampleBooking(start string) aftercare.Booking {
	at, _ := time.Parse(time.RFC3339, start)
	return aftercare.Booking{
		ID:              "bk_1001",
		Treatment:       "botox",
		AppointmentAt:   at,
		DurationMinutes: 30,
		Patient: aftercare.Patient{
			FirstName: "Ana", Phone: "+15555550123", Timezone: "America/New_York", SMSOptIn: true,
		},
	}
}

func printMessages(tl *aftercare.Timeline, steps ...string) {
	for _, m := range tl.Messages {
		if len(steps) == 0 || slices.Contains(steps, m.Step) {
			fmt.Printf("%-12s %-5s %s %s\n", m.Step, m.Channel, m.SendAt.Format("Mon Jan 2 15:04 MST"), m.Status)
		}
	}
}

// A Go backend books an appointment directly, without the HTTP API.
func ExampleClient_Book() {
	client, stop := newExampleClient()
	defer stop()

	tl, created, err := client.Book(context.Background(), exampleBooking("2026-12-01T15:00:00-05:00"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tl.ID, tl.Status, "created:", created)
	printMessages(tl)
	// Output:
	// bk_1001 scheduled created: true
	// consent      sms   Tue Nov 24 12:00 EST scheduled
	// reminder     sms   Mon Nov 30 15:00 EST scheduled
	// upright      sms   Tue Dec 1 15:30 EST scheduled
	// lie_down     sms   Tue Dec 1 19:30 EST scheduled
	// day1         sms   Wed Dec 2 10:00 EST scheduled
	// day3         sms   Fri Dec 4 10:00 EST scheduled
	// day14        sms   Tue Dec 15 10:00 EST scheduled
}

// Moving an appointment plans the unsent messages again under a new version.
func ExampleClient_Reschedule() {
	client, stop := newExampleClient()
	defer stop()
	ctx := context.Background()
	if _, _, err := client.Book(ctx, exampleBooking("2026-12-01T15:00:00-05:00")); err != nil {
		fmt.Println(err)
		return
	}

	tl, changed, err := client.Reschedule(ctx, exampleBooking("2026-12-03T11:00:00-05:00"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("version", tl.Version, "changed:", changed)
	printMessages(tl, "reminder", "upright")
	// Output:
	// version 2 changed: true
	// reminder     sms   Wed Dec 2 11:00 EST scheduled
	// upright      sms   Thu Dec 3 11:30 EST scheduled
}

// The clinic reports when the treatment really ended; aftercare moves with it.
func ExampleClient_Treated() {
	client, stop := newExampleClient()
	defer stop()
	ctx := context.Background()
	// Booked at noon for 11:30 the same day, 30 minutes: it ran late.
	if _, _, err := client.Book(ctx, exampleBooking("2026-11-24T11:30:00-05:00")); err != nil {
		fmt.Println(err)
		return
	}

	ended, _ := time.Parse(time.RFC3339, "2026-11-24T11:55:00-05:00")
	tl, err := client.Treated(ctx, "bk_1001", ended)
	if err != nil {
		fmt.Println(err)
		return
	}
	printMessages(tl, "upright", "lie_down")
	// Output:
	// upright      sms   Tue Nov 24 12:00 EST scheduled
	// lie_down     sms   Tue Nov 24 15:55 EST scheduled
}

// Cancelling stops every unsent message; notify tells the patient once.
func ExampleClient_Cancel() {
	client, stop := newExampleClient()
	defer stop()
	ctx := context.Background()
	if _, _, err := client.Book(ctx, exampleBooking("2026-12-01T15:00:00-05:00")); err != nil {
		fmt.Println(err)
		return
	}

	tl, err := client.Cancel(ctx, "bk_1001", true)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tl.Status)
	printMessages(tl, "consent", "day14", aftercare.StepCancellation)
	// Output:
	// cancelled
	// consent      sms   Tue Nov 24 12:00 EST cancelled
	// day14        sms   Tue Dec 15 10:00 EST cancelled
	// cancellation sms   Tue Nov 24 12:00 EST scheduled
}

// Validation errors name each field and say how to fix it.
func ExampleClient_Book_invalid() {
	protocols, _ := protocol.Builtin()
	client := scheduler.New(nil, nil, scheduler.Config{Protocols: protocols})
	_, _, err := client.Book(context.Background(), aftercare.Booking{
		ID: "bk_1002", Treatment: "botox", AppointmentAt: time.Now(),
		Patient: aftercare.Patient{FirstName: "Ana", Phone: "555-0123", Timezone: "Europe/Madrid", SMSOptIn: true},
	})
	if e, ok := errors.AsType[*aftercare.Error](err); ok {
		for _, f := range e.Fields {
			fmt.Printf("%s: %s\n", f.Field, f.Message)
		}
	}
	// Output:
	// patient.phone: must be in international form with a country code, such as +15555550123
}
