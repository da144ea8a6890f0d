package received_test

import (
	"testing"
	"time"

	"github.com/aftercare/aftercare/internal/received"
)

func TestWait(t *testing.T) {
	t.Parallel()
	var b received.Inbox[int]
	if items, ok := b.Wait(1, 20*time.Millisecond); ok || len(items) != 0 {
		t.Fatalf("Wait on an empty inbox = %v, %v", items, ok)
	}
	go func() { // added while Wait waits, or before: either way it sees all three
		for i := range 3 {
			b.Add(i)
		}
	}()
	items, ok := b.Wait(3, time.Minute)
	if !ok || len(items) != 3 || items[2] != 2 {
		t.Fatalf("Wait = %v, %v", items, ok)
	}
	if n := b.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
	items[0] = 99
	if b.All()[0] != 0 {
		t.Error("All shares memory with the caller's copy")
	}
}
