package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// openRedisURL opens the Redis that REDIS_URL names and returns the same
// address as an asynq connection option, for the dashboard. Forms:
//
//	redis://[:password@]host:port[/db]                   one server (rediss:// for TLS)
//	redis-sentinel://[:password@]host:port[,host:port]/MASTER[?db=N]
//	redis-cluster://[:password@]host:port[,host:port...]
func openRedisURL(raw string) (redis.UniversalClient, asynq.RedisConnOpt, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	switch scheme {
	case "redis", "rediss":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, nil, err
		}
		conn, err := asynq.ParseRedisURI(raw)
		if err != nil {
			return nil, nil, err
		}
		return redis.NewClient(opt), conn, nil
	case "redis-sentinel", "redis-cluster":
	default:
		return nil, nil, fmt.Errorf("%q: use redis://, rediss://, redis-sentinel:// or redis-cluster://", scheme+"://")
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
			return nil, nil, fmt.Errorf("%q is not host:port", a)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, nil, err
	}
	db := 0
	if v := q.Get("db"); v != "" {
		if db, err = strconv.Atoi(v); err != nil {
			return nil, nil, fmt.Errorf("db=%s is not a number", v)
		}
	}

	if scheme == "redis-cluster" {
		if master != "" || db != 0 {
			return nil, nil, fmt.Errorf("a cluster has no master name or database number")
		}
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: password}),
			asynq.RedisClusterClientOpt{Addrs: addrs, Password: password}, nil
	}
	if master == "" {
		return nil, nil, fmt.Errorf("name the master after the sentinels: redis-sentinel://host:26379/MASTER")
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: addrs, Password: password, DB: db}),
		asynq.RedisFailoverClientOpt{MasterName: master, SentinelAddrs: addrs, Password: password, DB: db}, nil
}
