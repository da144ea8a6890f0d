package chaos

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

// fault is one way a run breaks things; do returns what it did.
type fault struct {
	name string
	do   func(c *run) (string, error)
}

// faults are the faults a run picks from.
var faults = []fault{
	{"kill-worker", func(c *run) (string, error) {
		procs := c.live()
		if len(procs) == 0 {
			return "no worker up; started one", c.startWorker()
		}
		p := procs[c.rng.IntN(len(procs))]
		if err := c.kill(p); err != nil {
			return "", err
		}
		if err := c.startWorker(); err != nil {
			return "", err
		}
		return fmt.Sprintf("SIGKILL to worker %d (pid %d) and started another", p.n, p.cmd.Process.Pid), nil
	}},
	{"restart-redis", func(c *run) (string, error) {
		start := time.Now()
		sig, how := os.Signal(syscall.SIGTERM), "shut down"
		if c.CrashRedis {
			sig, how = syscall.SIGKILL, "killed with SIGKILL"
		}
		if err := c.redis.Restart(sig); err != nil {
			return "", err
		}
		return fmt.Sprintf("redis-server %s and back, its AOF loaded, in %s", how, time.Since(start).Round(time.Millisecond)), nil
	}},
	{"twilio-500", func(c *run) (string, error) {
		c.twilio.Fail(20, 500, 20500, "Internal Server Error")
		return "Twilio answers the next 20 texts with HTTP 500", nil
	}},
	{"twilio-429", func(c *run) (string, error) {
		c.twilio.Fail(20, 429, 20429, "Too Many Requests")
		return "Twilio answers the next 20 texts with HTTP 429", nil
	}},
	{"twilio-stall", func(c *run) (string, error) {
		// Longer than the sender's 10 s timeout: the texts go out and the
		// workers never hear so.
		c.twilio.SetStall(15 * time.Second)
		time.AfterFunc(3*time.Second, func() { c.twilio.SetStall(0) })
		return "for 3 s Twilio takes each text and answers 15 s later, after the sender gave up", nil
	}},
	{"smtp-refuse", func(c *run) (string, error) {
		c.mail.Reject(30, "MAIL", 421, "4.3.2 Service not available, try again later")
		return "the SMTP server refuses the next 30 emails with 421", nil
	}},
}

// FaultNames lists the faults a run can make.
func FaultNames() []string {
	names := make([]string, len(faults))
	for i, f := range faults {
		names[i] = f.name
	}
	return names
}

func faultByName(name string) (fault, bool) {
	for _, f := range faults {
		if f.name == name {
			return f, true
		}
	}
	return fault{}, false
}

// breakThings makes a random fault every c.Every on average until ctx
// ends, with a progress line every 10 s.
func (c *run) breakThings(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	after := func() <-chan time.Time { return time.After(time.Duration((0.5 + c.rng.Float64()) * float64(c.Every))) }
	next := after()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			c.logf("booked %d/%d; Twilio took %d texts, SMTP %d emails; %d workers up",
				c.booked.Load(), c.Bookings, c.twilio.Len(), c.mail.Len(), len(c.live()))
			continue
		case <-next:
			next = after()
		}
		f := c.faults[c.rng.IntN(len(c.faults))]
		what, err := f.do(c)
		if err != nil {
			return fmt.Errorf("fault %s: %w", f.name, err)
		}
		c.mu.Lock()
		c.made[f.name]++
		c.mu.Unlock()
		c.logf("%s: %s", f.name, what)
	}
}
