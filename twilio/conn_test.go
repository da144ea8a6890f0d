package twilio_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aftercare/aftercare/twilio"
)

// Concurrent sends keep their connections to Twilio between messages
// instead of opening (and, on the real API, TLS-handshaking) new ones.
func TestConcurrentSendsReuseConnections(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var dials atomic.Int64
	go func() { // forwards to the fake and counts connections
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			s, err := net.Dial("tcp", strings.TrimPrefix(fake.URL(), "http://"))
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	s := newSender(t, fake, func(c *twilio.Config) { c.BaseURL = "http://" + l.Addr().String() })

	const senders, each = 10, 20
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range each {
				if _, err := s.Send(context.Background(), outgoing(patient, "Hi")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := dials.Load(); n > 2*senders {
		t.Errorf("%d connections for %d messages from %d senders, want at most %d", n, senders*each, senders, 2*senders)
	}
}
