package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisTarget is what -redis and its companions say about the Redis to use.
type redisTarget struct {
	addrs              []string // host:port of the node, the cluster seeds, or the sentinels
	username, password string
	tls                bool
	db                 int
	cluster            bool   // forced with -redis-cluster; otherwise detected
	sentinelMaster     string // set: addrs are sentinels watching this master
	sentinelPassword   string
	tlsCA              string // PEM file of the CA that signed Redis's certificate
}

// parseRedisAddr reads -redis: host:port, host:port,host:port,... (cluster seeds or
// sentinels), or a redis:// / rediss:// URL whose host may also be a comma-separated list
// (redis://user:password@host:port,host:port/db). Errors never quote the address, which may
// hold a password.
func parseRedisAddr(s string) (redisTarget, error) {
	var t redisTarget
	s = strings.TrimSpace(s)
	if strings.Contains(s, "://") {
		scheme, rest, _ := strings.Cut(s, "://")
		switch strings.ToLower(scheme) {
		case "redis":
		case "rediss":
			t.tls = true
		default:
			return t, fmt.Errorf("redis address: scheme %q, want redis:// or rediss://", scheme)
		}
		// The host part may list several nodes, which url.Parse refuses: cut it out by hand.
		hostEnd := strings.IndexAny(rest, "/?")
		if hostEnd < 0 {
			hostEnd = len(rest)
		}
		authority, tail := rest[:hostEnd], rest[hostEnd:]
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			ui, err := url.Parse("x://" + authority[:at] + "@h")
			if err != nil || ui.User == nil {
				return t, errors.New("redis address: malformed user or password in the URL")
			}
			t.username = ui.User.Username()
			t.password, _ = ui.User.Password()
			if _, hasPass := ui.User.Password(); !hasPass {
				// redis://secret@host: a lone user part is the password, as redis-cli takes it.
				t.password, t.username = t.username, ""
			}
			authority = authority[at+1:]
		}
		u, err := url.Parse("x://h" + tail)
		if err != nil {
			return t, errors.New("redis address: malformed path or query in the URL")
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			if t.db, err = strconv.Atoi(p); err != nil || t.db < 0 {
				return t, fmt.Errorf("redis address: database %q, want a number", p)
			}
		}
		hosts := []string{}
		if authority != "" {
			hosts = append(hosts, strings.Split(authority, ",")...)
		}
		hosts = append(hosts, u.Query()["addr"]...)
		s = strings.Join(hosts, ",")
	}
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			if t.tls || strings.Contains(err.Error(), "missing port") {
				host, port = a, "6379"
			} else {
				return t, fmt.Errorf("redis address %q: want host:port", a)
			}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return t, fmt.Errorf("redis address %q: bad port", a)
		}
		t.addrs = append(t.addrs, net.JoinHostPort(host, port))
	}
	if len(t.addrs) == 0 {
		return t, errors.New("redis address: no host:port given")
	}
	return t, nil
}

// String names the Redis for messages: its addresses, never a password.
func (t redisTarget) String() string {
	s := strings.Join(t.addrs, ",")
	if t.sentinelMaster != "" {
		s = "master " + t.sentinelMaster + " of sentinels " + s
	}
	return s
}

func (t redisTarget) tlsConfig() (*tls.Config, error) {
	if !t.tls {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(t.addrs[0])
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if t.tlsCA != "" {
		pem, err := os.ReadFile(t.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("redis TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis TLS CA %s: no PEM certificate in it", t.tlsCA)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// redisTiming is how the clients wait: a purchase is not retried blindly, the caller retries
// with its request_id.
type redisTiming struct {
	pool int
	wait time.Duration // the longest WAIT a call may carry (-min-replicas-timeout)
}

func (t redisTarget) options(tm redisTiming) (*redis.UniversalOptions, error) {
	tc, err := t.tlsConfig()
	if err != nil {
		return nil, err
	}
	return &redis.UniversalOptions{
		Addrs:            t.addrs,
		DB:               t.db,
		Username:         t.username,
		Password:         t.password,
		MasterName:       t.sentinelMaster,
		SentinelPassword: t.sentinelPassword,
		TLSConfig:        tc,
		PoolSize:         tm.pool,
		DialTimeout:      2 * time.Second,
		ReadTimeout:      max(2*time.Second, tm.wait+time.Second),
		WriteTimeout:     2 * time.Second,
		PoolTimeout:      2 * time.Second,
		MaxRetries:       -1,
		MaxRedirects:     8, // MOVED/ASK during a reshard or a failover
	}, nil
}

// connect opens the client for t: a FailoverClient with a sentinel master, a ClusterClient
// when forced or when the node answers cluster_enabled:1, a plain Client otherwise.
func (t redisTarget) connect(ctx context.Context, tm redisTiming) (redis.UniversalClient, error) {
	o, err := t.options(tm)
	if err != nil {
		return nil, err
	}
	switch {
	case t.sentinelMaster != "":
		if t.db != 0 {
			return nil, errors.New("redis address: a database number with sentinel is not supported")
		}
		return redis.NewFailoverClient(o.Failover()), nil
	case t.cluster:
		return redis.NewClusterClient(o.Cluster()), nil
	}
	cluster, err := t.isCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	if cluster {
		if t.db != 0 {
			return nil, errors.New("redis address: Redis Cluster has only database 0")
		}
		return redis.NewClusterClient(o.Cluster()), nil
	}
	if len(t.addrs) > 1 {
		return nil, fmt.Errorf("redis at %s: several addresses, but the node is not in cluster mode (for sentinels, set -redis-sentinel-master)", t)
	}
	return redis.NewClient(o.Simple()), nil
}

// isCluster asks the seeds, in turn, for INFO cluster until one answers.
func (t redisTarget) isCluster(ctx context.Context, o *redis.UniversalOptions) (bool, error) {
	var last error
	for _, a := range t.addrs {
		so := *o.Simple()
		so.Addr = a
		so.PoolSize = 1
		c := redis.NewClient(&so)
		info, err := c.Info(ctx, "cluster").Result()
		c.Close()
		if err != nil {
			last = err
			continue
		}
		return strings.Contains(info, "cluster_enabled:1"), nil
	}
	return false, fmt.Errorf("redis at %s: %w", t, last)
}

// forEachMaster runs fn on every master: each master of a cluster, or the one Redis.
func forEachMaster(ctx context.Context, rdb redis.UniversalClient, fn func(ctx context.Context, node redis.UniversalClient, addr string) error) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return fn(ctx, c, c.Options().Addr)
		})
	}
	return fn(ctx, rdb, "")
}
