package redisstore

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Target is a Redis deployment named by a URL: one server, a master behind
// sentinels, or a cluster. Forms:
//
//	redis://[:password@]host:port[/db]                   one server (rediss:// for TLS)
//	redis-sentinel://[:password@]host:port[,host:port]/MASTER[?db=N]
//	redis-cluster://[:password@]host:port[,host:port...]
type Target struct {
	one      *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// ParseURL reads a Redis URL. Its errors never quote the URL: it may hold a
// password.
func ParseURL(raw string) (*Target, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	switch {
	case !ok:
		return nil, fmt.Errorf("has no scheme; use redis://, rediss://, redis-sentinel:// or redis-cluster://, such as redis://localhost:6379")
	case scheme == "redis", scheme == "rediss":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("is not a valid %s:// URL (%s); write special characters of a password %%-encoded", scheme, urlProblem(err))
		}
		return &Target{one: opt}, nil
	case scheme == "redis-sentinel", scheme == "redis-cluster":
	default:
		return nil, fmt.Errorf("has an unknown scheme; use redis://, rediss://, redis-sentinel:// or redis-cluster://")
	}

	rest, query, _ := strings.Cut(rest, "?")
	password := ""
	if at := strings.LastIndex(rest, "@"); at >= 0 { // a password may hold "@"
		userinfo, hosts := rest[:at], rest[at+1:]
		_, password, _ = strings.Cut(userinfo, ":")
		if p, err := url.PathUnescape(password); err == nil {
			password = p
		}
		rest = hosts
	}
	hosts, master, _ := strings.Cut(rest, "/")
	addrs := strings.Split(hosts, ",")
	for _, a := range addrs {
		if !strings.Contains(a, ":") {
			return nil, fmt.Errorf("%q is not host:port", a)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, err
	}
	db := 0
	if v := q.Get("db"); v != "" {
		if db, err = strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("db=%s is not a number", v)
		}
	}

	if scheme == "redis-cluster" {
		if master != "" || db != 0 {
			return nil, fmt.Errorf("a cluster has no master name or database number")
		}
		return &Target{cluster: &redis.ClusterOptions{Addrs: addrs, Password: password}}, nil
	}
	if master == "" {
		return nil, fmt.Errorf("name the master after the sentinels: redis-sentinel://host:26379/MASTER")
	}
	return &Target{failover: &redis.FailoverOptions{MasterName: master, SentinelAddrs: addrs, Password: password, DB: db}}, nil
}

// Client opens a new client of t, with its own connections. Its calls give
// up when their context ends, so a caller with a deadline is never held
// longer by a Redis that hangs. A timeout above zero also bounds each dial,
// read and write and the wait for a connection (go-redis's retries stay:
// a caller that must answer quickly gives its calls a deadline); zero
// keeps go-redis's defaults (3 s reads, 5 s dials).
func (t *Target) Client(timeout time.Duration) redis.UniversalClient {
	switch {
	case t.one != nil:
		o := *t.one
		o.ContextTimeoutEnabled = true
		quick(timeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
		return redis.NewClient(&o)
	case t.failover != nil:
		o := *t.failover
		o.ContextTimeoutEnabled = true
		quick(timeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
		return redis.NewFailoverClient(&o)
	}
	o := *t.cluster
	o.ContextTimeoutEnabled = true
	quick(timeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout)
	return redis.NewClusterClient(&o)
}

// quick sets a client's timeouts to timeout, unless it is zero.
func quick(timeout time.Duration, dial, read, write, pool *time.Duration) {
	if timeout <= 0 {
		return
	}
	*dial, *read, *write, *pool = timeout, timeout, timeout, timeout
}

// urlProblem says what is wrong with a Redis URL without quoting it.
func urlProblem(err error) string {
	var ue *url.Error
	switch {
	case strings.Contains(err.Error(), "invalid database number"):
		return "the database number after the last / must be a number"
	case errors.As(err, &ue):
		return "it does not parse as a URL"
	}
	return "its host, port or options are wrong"
}
