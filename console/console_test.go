package console_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/console"
)

func TestOutbox(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	path := filepath.Join(t.TempDir(), "outbox.log")
	box := console.New(&out, path)
	msgs := []aftercare.Outgoing{
		{ID: "bk_1:v1:consent:sms", Channel: aftercare.SMS, To: "+15555550123", Text: "Hi Ana"},
		{ID: "bk_1:v1:consent:email", Channel: aftercare.Email, To: "ana@example.com", Subject: "Before your visit", Text: "Hi Ana,\n\nSee you soon."},
	}
	for _, m := range msgs {
		id, err := box.Send(context.Background(), m)
		if err != nil || id != "console-"+m.ID {
			t.Fatalf("Send = %q, %v", id, err)
		}
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != out.String() {
		t.Error("the outbox file differs from what was printed")
	}
	for _, want := range []string{"SMS to +1555•••••23", "EMAIL to a•••@example.com", "subject: Before your visit", "│ See you soon.", "id: bk_1:v1:consent:sms"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("outbox lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "5555550123") || strings.Contains(out.String(), "ana@example.com") {
		t.Error("outbox shows the recipient unredacted")
	}
}
