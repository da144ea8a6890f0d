package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

// workerProc is one worker process of a run.
type workerProc struct {
	n      int
	cmd    *exec.Cmd
	killed atomic.Bool // by the run, on purpose
	done   chan struct{}
	err    error // once done is closed
}

// startWorker starts one more worker process, logging to its own file.
func (c *run) startWorker() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	n := c.count
	logs, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("worker-%d.log", n)))
	if err != nil {
		return err
	}
	cmd := exec.Command(c.Aftercare, "serve", "--role", "worker")
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		logs.Close()
		return fmt.Errorf("start worker %d: %w", n, err)
	}
	p := &workerProc{n: n, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logs.Close()
		close(p.done)
		if !p.killed.Load() {
			c.mu.Lock()
			c.exits = append(c.exits, fmt.Sprintf("worker %d exited on its own (%v); see worker-%d.log", n, p.err, n))
			c.procs = slices.DeleteFunc(c.procs, func(q *workerProc) bool { return q == p })
			c.mu.Unlock()
		}
	}()
	c.procs = append(c.procs, p)
	return nil
}

func (c *run) live() []*workerProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.procs)
}

// kill sends SIGKILL to p and waits for it to die.
func (c *run) kill(p *workerProc) error {
	p.killed.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	c.mu.Lock()
	c.procs = slices.DeleteFunc(c.procs, func(q *workerProc) bool { return q == p })
	c.mu.Unlock()
	return nil
}

// stopWorkers sends SIGTERM to every live worker and waits for them. A
// worker that does not exit cleanly (a race report from a -race build exits
// 66, for one) is a problem, recorded with those that exited on their own.
// It returns each stopped worker's peak resident set in KiB.
func (c *run) stopWorkers() map[int]int64 {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for _, p := range procs {
		p.killed.Store(true)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	peaks := map[int]int64{}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peaks[p.n] = ru.Maxrss
		}
		if p.err != nil {
			c.mu.Lock()
			c.exits = append(c.exits, fmt.Sprintf("worker %d did not stop cleanly on SIGTERM (%v); see worker-%d.log", p.n, p.err, p.n))
			c.mu.Unlock()
		}
	}
	return peaks
}
