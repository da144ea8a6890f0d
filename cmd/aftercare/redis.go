package main

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisClients reads REDIS_URL and returns a function that opens a new
// client of the Redis it names (the service and the dashboard each open
// one). Clients give up when a call's context ends, so an API request with
// a deadline is never held longer by a Redis that hangs. Forms:
//
//	redis://[:password@]host:port[/db]                   one server (rediss:// for TLS)
//	redis-sentinel://[:password@]host:port[,host:port]/MASTER[?db=N]
//	redis-cluster://[:password@]host:port[,host:port...]
func redisClients(raw string) (func() redis.UniversalClient, error) {
	// Errors never quote the value: it may hold a password.
	scheme, rest, ok := strings.Cut(raw, "://")
	switch {
	case !ok:
		return nil, fmt.Errorf("has no scheme; use redis://, rediss://, redis-sentinel:// or redis-cluster://, such as redis://localhost:6379")
	case scheme == "redis", scheme == "rediss":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("is not a valid %s:// URL (%s); write special characters of a password %%-encoded", scheme, urlProblem(err))
		}
		opt.ContextTimeoutEnabled = true
		return func() redis.UniversalClient { o := *opt; return redis.NewClient(&o) }, nil
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
		return func() redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: password, ContextTimeoutEnabled: true})
		}, nil
	}
	if master == "" {
		return nil, fmt.Errorf("name the master after the sentinels: redis-sentinel://host:26379/MASTER")
	}
	return func() redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: addrs, Password: password, DB: db,
			ContextTimeoutEnabled: true})
	}, nil
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
