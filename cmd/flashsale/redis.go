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
		hosts, err := parseRedisURL(&t, s)
		if err != nil {
			return t, err
		}
		s = hosts
	}
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			// No port: host, [v6] or a bare IPv6 address, on Redis's port 6379.
			host = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
			if strings.Contains(host, ":") && net.ParseIP(host) == nil || strings.ContainsAny(host, "[]") {
				return t, fmt.Errorf("redis address %q: want host:port, [ipv6]:port, or a host alone for port 6379", a)
			}
			port = "6379"
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

// parseRedisURL reads a redis:// or rediss:// URL into t (TLS, user, password, database) and
// returns its hosts, comma-separated, for parseRedisAddr to check. Errors never quote the URL.
func parseRedisURL(t *redisTarget, s string) (string, error) {
	scheme, rest, _ := strings.Cut(s, "://")
	switch strings.ToLower(scheme) {
	case "redis":
	case "rediss":
		t.tls = true
	default:
		return "", fmt.Errorf("redis address: scheme %q, want redis:// or rediss://", scheme)
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
			return "", errors.New("redis address: malformed user or password in the URL")
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
		return "", errors.New("redis address: malformed path or query in the URL")
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if t.db, err = strconv.Atoi(p); err != nil || t.db < 0 {
			return "", fmt.Errorf("redis address: database %q, want a number", p)
		}
	}
	q := u.Query()
	for k := range q {
		if k != "addr" && k != "db" {
			return "", fmt.Errorf("redis address: query parameter %q not supported (only db and addr)", k)
		}
	}
	if dbs := q["db"]; len(dbs) > 0 {
		n, err := strconv.Atoi(dbs[0])
		switch {
		case len(dbs) > 1 || err != nil || n < 0:
			return "", fmt.Errorf("redis address: db=%q, want one number", strings.Join(dbs, ","))
		case strings.Trim(u.Path, "/") != "" && n != t.db:
			return "", fmt.Errorf("redis address: database %d in the path and db=%d in the query", t.db, n)
		}
		t.db = n
	}
	hosts := []string{}
	if authority != "" {
		hosts = append(hosts, strings.Split(authority, ",")...)
	}
	hosts = append(hosts, q["addr"]...)
	return strings.Join(hosts, ","), nil
}

// redactRedisAddr is -redis as usage text shows it: a URL's password replaced by xxxxx, and
// "(set)" for an address that does not parse.
func redactRedisAddr(s string) string {
	if _, err := parseRedisAddr(s); err != nil {
		return "(set)"
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(s), "://")
	if !ok {
		return s
	}
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	at := strings.LastIndex(rest[:hostEnd], "@")
	if at < 0 {
		return s
	}
	user := "xxxxx"
	if name, _, hasPass := strings.Cut(rest[:at], ":"); hasPass && name != "" {
		user = name + ":xxxxx"
	} else if hasPass {
		user = ":xxxxx"
	}
	return scheme + "://" + user + "@" + rest[at+1:]
}

// String names the Redis for messages: its addresses, never a password.
func (t redisTarget) String() string {
	s := strings.Join(t.addrs, ",")
	if len(t.addrs) > 4 {
		s = fmt.Sprintf("%s and %d more", strings.Join(t.addrs[:3], ","), len(t.addrs)-3)
	}
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
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if tc != nil {
		dial = tlsDialer(tc, 2*time.Second)
	}
	return &redis.UniversalOptions{
		Dialer:           dial,
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
	cluster, live, err := t.isCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	if cluster {
		if t.db != 0 {
			return nil, errors.New("redis address: Redis Cluster has only database 0")
		}
		co := o.Cluster()
		co.Addrs = live // the client finds the other nodes from them
		return redis.NewClusterClient(co), nil
	}
	if len(t.addrs) > 1 {
		return nil, fmt.Errorf("redis at %s: several addresses, but the node is not in cluster mode (for sentinels, set -redis-sentinel-master)", t)
	}
	return redis.NewClient(o.Simple()), nil
}

// isCluster asks every address at once for INFO cluster, each with one dial attempt, and
// takes the first answer: dead seeds cost one dial timeout in all, not a timeout each, and
// the whole attempt is bounded. It also returns the addresses that had answered by then, so
// that a cluster client starts from live seeds.
func (t redisTarget) isCluster(ctx context.Context, o *redis.UniversalOptions) (bool, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout+o.ReadTimeout)
	defer cancel()
	type answer struct {
		addr    string
		cluster bool
		err     error
	}
	answers := make(chan answer, len(t.addrs))
	slots := make(chan struct{}, 64) // at most this many dials at once
	for _, a := range t.addrs {
		go func() {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			case <-ctx.Done():
				answers <- answer{addr: a, err: ctx.Err()}
				return
			}
			so := *o.Simple()
			so.Addr, so.PoolSize, so.DialerRetries = a, 1, 1
			c := redis.NewClient(&so)
			defer c.Close()
			info, err := c.Info(ctx, "cluster").Result()
			answers <- answer{addr: a, cluster: strings.Contains(info, "cluster_enabled:1"), err: err}
		}()
	}
	var last error
	for range t.addrs {
		a := <-answers
		if a.err != nil {
			last = a.err
			continue
		}
		live := []string{a.addr}
		for more := true; more; {
			select {
			case b := <-answers:
				if b.err == nil {
					live = append(live, b.addr)
				}
			default:
				more = false
			}
		}
		return a.cluster, live, nil
	}
	return false, nil, fmt.Errorf("redis at %s: %w", t, last)
}

// tlsDialer dials addr and does the TLS handshake within timeout, once: a plain-text port
// answers nothing to a TLS hello, and the error then says so instead of a bare timeout.
func tlsDialer(tc *tls.Config, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		raw, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, tc)
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS handshake with %s failed (rediss:// needs Redis's TLS port; is this a plain-text one?): %w", addr, err)
		}
		return c, nil
	}
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
