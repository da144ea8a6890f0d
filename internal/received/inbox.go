// Package received is the list of messages a fake provider has accepted, which
// tests read and wait on.
package received

import (
	"sync"
	"time"
)

// Inbox collects items in the order added. The zero value is ready to use
// and safe for concurrent use.
type Inbox[T any] struct {
	mu    sync.Mutex
	items []T
	added chan struct{} // closed and replaced on every Add
}

// Add appends v and wakes every Wait.
func (b *Inbox[T]) Add(v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.items = append(b.items, v)
	if b.added != nil {
		close(b.added)
	}
	b.added = make(chan struct{})
}

// Len returns how many items there are, without copying them.
func (b *Inbox[T]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items)
}

// All returns a copy of the items, oldest first.
func (b *Inbox[T]) All() []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]T(nil), b.items...)
}

// Wait blocks until there are at least n items or timeout has passed, and
// returns the items and whether there were n. It copies the items once, at
// the end: waiting on thousands does not copy them on every arrival.
func (b *Inbox[T]) Wait(n int, timeout time.Duration) ([]T, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		added, ok := b.atLeast(n)
		if ok {
			return b.All(), true
		}
		select {
		case <-added:
		case <-timer.C:
			items := b.All()
			return items, len(items) >= n
		}
	}
}

// atLeast reports whether there are n items, and if not, returns the
// channel the next Add closes.
func (b *Inbox[T]) atLeast(n int) (chan struct{}, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.items) >= n {
		return nil, true
	}
	if b.added == nil {
		b.added = make(chan struct{})
	}
	return b.added, false
}
