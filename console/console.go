// Package console is the outbox used when no SMS or email provider is
// configured: each message is printed as one readable block and appended to
// an outbox file, so a developer can see what patients would receive.
package console

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aftercare/aftercare"
)

// Outbox writes messages to a writer and, if a path is set, to a file.
type Outbox struct {
	mu   sync.Mutex
	w    io.Writer
	path string
	now  func() time.Time
}

// New returns an Outbox that prints to w and appends to the file at path
// (no file if path is empty).
func New(w io.Writer, path string) *Outbox {
	return &Outbox{w: w, path: path, now: time.Now}
}

// Send prints msg. The recipient is redacted like everywhere else; the
// body is what the patient would read. The provider id is the message id.
func (o *Outbox) Send(_ context.Context, msg aftercare.Outgoing) (string, error) {
	block := format(msg, o.now())
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := io.WriteString(o.w, block); err != nil {
		return "", &aftercare.SendError{Class: aftercare.ErrTransient, Code: "console", Err: err}
	}
	if o.path != "" {
		if err := appendFile(o.path, block); err != nil {
			return "", &aftercare.SendError{Class: aftercare.ErrTransient, Code: "console", Err: err}
		}
	}
	return "console-" + msg.ID, nil
}

func format(msg aftercare.Outgoing, at time.Time) string {
	var b strings.Builder
	rule := strings.Repeat("─", 64)
	fmt.Fprintf(&b, "┌%s\n", rule)
	fmt.Fprintf(&b, "│ %s to %s at %s\n", strings.ToUpper(string(msg.Channel)), aftercare.Redact(msg.To), at.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "│ id: %s\n", msg.ID)
	if msg.Subject != "" {
		fmt.Fprintf(&b, "│ subject: %s\n", msg.Subject)
	}
	fmt.Fprintf(&b, "├%s\n", rule)
	for _, line := range strings.Split(msg.Text, "\n") {
		fmt.Fprintf(&b, "│ %s\n", line)
	}
	fmt.Fprintf(&b, "└%s\n", rule)
	return b.String()
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
