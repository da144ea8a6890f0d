package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisClients reads REDIS_URL and returns a function that opens a new
// client of the Redis it names (the service and the dashboard each open
// one). Forms:
//
//	redis://[:password@]host:port[/db]                   one server (rediss:// for TLS)
//	redis-sentinel://[:password@]host:port[,host:port]/MASTER[?db=N]
//	redis-cluster://[:password@]host:port[,host:port...]
func redisClients(raw string) (func() redis.UniversalClient, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	switch scheme {
	case "redis", "rediss":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return func() redis.UniversalClient { o := *opt; return redis.NewClient(&o) }, nil
	case "redis-sentinel", "redis-cluster":
	default:
		return nil, fmt.Errorf("%q: use redis://, rediss://, redis-sentinel:// or redis-cluster://", scheme+"://")
	}

	rest, query, _ := strings.Cut(rest, "?")
	password := ""
	if userinfo, hosts, ok := strings.Cut(rest, "@"); ok {
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
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: password})
		}, nil
	}
	if master == "" {
		return nil, fmt.Errorf("name the master after the sentinels: redis-sentinel://host:26379/MASTER")
	}
	return func() redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: addrs, Password: password, DB: db})
	}, nil
}
