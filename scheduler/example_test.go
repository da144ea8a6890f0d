package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/config"
	"github.com/aftercare/aftercare/protocol"
	"github.com/aftercare/aftercare/redisstore"
	"github.com/aftercare/aftercare/scheduler"
)

// A Go backend books an appointment directly, without the HTTP API.
func ExampleClient_Book() {
	mr, _ := miniredis.Run() // any Redis will do
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	protocols, _ := protocol.Builtin()
	clinic, _ := config.LoadClinic("") // the built-in example clinic
	client := scheduler.New(redisstore.New(rdb), scheduler.AsynqTasks(rdb), scheduler.Config{
		Protocols: protocols,
		Clinic:    clinic,
		Now:       func() time.Time { return time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC) },
	})

	ny, _ := time.LoadLocation("America/New_York")
	tl, created, err := client.Book(context.Background(), aftercare.Booking{
		ID:              "bk_1001",
		Treatment:       "botox",
		AppointmentAt:   time.Date(2026, 12, 1, 15, 0, 0, 0, ny),
		DurationMinutes: 30,
		Patient: aftercare.Patient{
			FirstName: "Ana", Phone: "+15555550123", Timezone: "America/New_York", SMSOptIn: true,
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tl.ID, tl.Status, "created:", created)
	for _, m := range tl.Messages {
		fmt.Printf("%-8s %-5s %s %s\n", m.Step, m.Channel, m.SendAt.Format("Mon Jan 2 15:04 MST"), m.Status)
	}
	// Output:
	// bk_1001 scheduled created: true
	// consent  sms   Tue Nov 24 12:00 EST scheduled
	// reminder sms   Mon Nov 30 15:00 EST scheduled
	// upright  sms   Tue Dec 1 15:30 EST scheduled
	// lie_down sms   Tue Dec 1 19:30 EST scheduled
	// day1     sms   Wed Dec 2 10:00 EST scheduled
	// day3     sms   Fri Dec 4 10:00 EST scheduled
	// day14    sms   Tue Dec 15 10:00 EST scheduled
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
