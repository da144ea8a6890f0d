// Package redisproc runs private redis-server processes (a single server,
// a Sentinel-watched primary, a three-master cluster) for tests and
// benchmarks, each on free loopback ports in a directory of its own.
package redisproc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process started by StartServer.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	args []string // to start it again
}

// StartServer starts redis-server (found on PATH) on a free loopback port
// with its working directory in dir, persistence off unless extra arguments
// turn it on, and waits until it answers PING.
func StartServer(dir string, extra ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 { // a free port can be taken between probing and binding
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--loglevel", "warning",
		}, extra...)
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, args: args}
		if lastErr = s.waitReady(5 * time.Second); lastErr == nil {
			return s, nil
		}
		s.Stop()
	}
	return nil, fmt.Errorf("redis-server did not start: %w", lastErr)
}

func (s *Server) waitReady(timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Pause freezes the server (SIGSTOP): it keeps its connections and answers
// nothing, as a hung Redis does, until Resume.
func (s *Server) Pause() error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server run again.
func (s *Server) Resume() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

// Restart stops the server with sig, starts it again on the same port and
// directory, and waits until it answers PING, which it does once it has
// loaded its data. With SIGTERM and AOF on, Redis writes and syncs the file
// before it exits, as on any orderly restart; SIGKILL is a crash, and loses
// what the fsync policy had not yet synced.
func (s *Server) Restart(sig os.Signal) error {
	if err := s.cmd.Process.Signal(sig); err != nil {
		return err
	}
	_ = s.cmd.Wait()
	return s.Start()
}

// Start starts a stopped server again on the same port and directory, and
// waits until it has loaded its data.
func (s *Server) Start() error {
	cmd := exec.Command(s.cmd.Path, s.args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	return s.waitReady(30 * time.Second)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// StartCluster starts a Redis Cluster of three masters (no replicas) in
// dir, one redis-server each, joins them with redis-cli and waits until the
// cluster is up. It returns the nodes' addresses and a function that stops
// them.
func StartCluster(dir string) ([]string, func(), error) {
	var (
		servers []*Server
		addrs   []string
	)
	stop := func() {
		for _, s := range servers {
			s.Stop()
		}
	}
	for i := range 3 {
		node := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(node, 0o755); err != nil {
			stop()
			return nil, nil, err
		}
		s, err := StartServer(node, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		if err != nil {
			stop()
			return nil, nil, err
		}
		servers, addrs = append(servers, s), append(addrs, s.Addr)
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := c.ClusterInfo(context.Background()).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") && c.Ping(context.Background()).Err() == nil {
			return addrs, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("the cluster did not come up: %v %s", err, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartSentinel starts a primary redis-server and one Sentinel watching it
// as master name "aftercare", in dir. It returns the Sentinel's address and
// a function that stops both.
func StartSentinel(dir string) (string, func(), error) {
	primary, err := StartServer(dir)
	if err != nil {
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		primary.Stop()
		return "", nil, err
	}
	_, primaryPort, _ := net.SplitHostPort(primary.Addr)
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor aftercare 127.0.0.1 %s 1\nsentinel down-after-milliseconds aftercare 5000\n", port, dir, primaryPort)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		primary.Stop()
		return "", nil, err
	}
	cmd := exec.Command("redis-server", conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		primary.Stop()
		return "", nil, err
	}
	sentinel := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd}
	stop := func() { sentinel.Stop(); primary.Stop() }
	c := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		addr, err := c.GetMasterAddrByName(context.Background(), "aftercare").Result()
		if err == nil && len(addr) == 2 {
			return sentinel.Addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("the sentinel did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
