package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Topology names a Redis set-up the end-to-end tests run against.
type Topology string

// The topologies: one redis-server; a Redis Cluster of 3 masters and 3 replicas; a primary
// with a replica watched by 3 sentinels.
const (
	Single   Topology = "single"
	Cluster  Topology = "cluster"
	Sentinel Topology = "sentinel"
)

// Topologies is every topology, in the order tests run them.
var Topologies = []Topology{Single, Cluster, Sentinel}

// Target is a running topology: a client for the test's own use, and the environment that
// points a flashsale process at it.
type Target struct {
	Topology Topology
	Client   redis.UniversalClient
	Env      []string
	// Single is the redis-server of the single topology (nil otherwise).
	Single *Redis
	// ClusterSet is the cluster of the cluster topology (nil otherwise).
	ClusterSet *RedisCluster
	// SentinelSet is the set-up of the sentinel topology (nil otherwise).
	SentinelSet *RedisSentinel
}

// Start starts topology tp for t; everything stops with t.Cleanup. Its Env also gives the
// processes an archive of their own in a temporary directory.
func Start(t testing.TB, tp Topology) *Target {
	t.Helper()
	tg := start(t, tp)
	tg.Env = append(tg.Env, "FLASHSALE_ARCHIVE=file://"+filepath.Join(t.TempDir(), "archive"))
	return tg
}

func start(t testing.TB, tp Topology) *Target {
	t.Helper()
	switch tp {
	case Cluster:
		c := StartCluster(t)
		return &Target{Topology: tp, Client: c.Client, ClusterSet: c, Env: []string{"FLASHSALE_REDIS_ADDR=" + strings.Join(c.Addrs(), ",")}}
	case Sentinel:
		s := StartSentinel(t)
		return &Target{Topology: tp, Client: s.Client, SentinelSet: s, Env: []string{
			"FLASHSALE_REDIS_ADDR=" + strings.Join(s.SentinelAddrs(), ","),
			"FLASHSALE_REDIS_SENTINEL_MASTER=" + s.Master,
		}}
	default:
		r, rdb := StartRedis(t)
		return &Target{Topology: Single, Client: rdb, Single: r, Env: []string{"FLASHSALE_REDIS_ADDR=" + r.Addr}}
	}
}

// clusterPort returns a port for a cluster node: free, with port+10000 (the cluster bus) free
// too, both outside the ephemeral range and at most 65535.
func clusterPort(t testing.TB) int {
	t.Helper()
	return pickPort(t, 10000)
}

// startNode starts a redis-server on port in a dir of its own with the test defaults (AOF,
// fsync always) and args.
func startNode(t testing.TB, port int, args ...string) (*Redis, error) {
	dir := t.TempDir()
	r := &Redis{t: t, Dir: dir, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	r.args = append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--logfile", filepath.Join(dir, "redis.log"), "--repl-diskless-sync-delay", "0",
	}, args...)
	if err := r.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(r.Kill)
	return r, nil
}

// RedisCluster is a Redis Cluster of 3 masters and 3 replicas owned by one test.
type RedisCluster struct {
	Nodes  []*Redis
	Client *redis.ClusterClient
}

// Addrs returns the nodes' addresses.
func (c *RedisCluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return a
}

// MasterOf returns the node that is master of key's slot now.
func (c *RedisCluster) MasterOf(t testing.TB, key string) *Redis {
	t.Helper()
	ctx := context.Background()
	c.Client.ReloadState(ctx)
	m, err := c.Client.MasterForKey(ctx, key)
	if err != nil {
		t.Fatalf("master of %s: %v", key, err)
	}
	for _, n := range c.Nodes {
		if n.Addr == m.Options().Addr {
			return n
		}
	}
	t.Fatalf("master of %s: %s is not a node of the cluster", key, m.Options().Addr)
	return nil
}

// ReplicaOf returns the node that replicates master now.
func (c *RedisCluster) ReplicaOf(t testing.TB, master *Redis) *Redis {
	t.Helper()
	mc := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer mc.Close()
	info, err := mc.Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatalf("replicas of %s: %v", master.Addr, err)
	}
	for line := range strings.Lines(info) {
		if !strings.HasPrefix(line, "slave0:") {
			continue
		}
		var ip, port string
		for _, f := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "slave0:")), ",") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			}
		}
		for _, n := range c.Nodes {
			if n.Addr == net.JoinHostPort(ip, port) {
				return n
			}
		}
	}
	t.Fatalf("no replica of %s: %q", master.Addr, info)
	return nil
}

// StartCluster starts six cluster-enabled redis-servers (AOF on, cluster-node-timeout 1000 ms)
// and joins them with redis-cli --cluster create --cluster-replicas 1; it returns once every
// slot is served. Everything stops with t.Cleanup.
func StartCluster(t testing.TB) *RedisCluster {
	t.Helper()
	lookRedis(t)
	c := &RedisCluster{}
	for len(c.Nodes) < 6 {
		var err error
		var n *Redis
		for range 5 {
			n, err = startNode(t, clusterPort(t), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no")
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("start cluster node: %v", err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.Nodes {
		nc := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		for {
			info, err := nc.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") && strings.Contains(info, "cluster_known_nodes:6") {
				break
			}
			if time.Now().After(deadline) {
				nc.Close()
				t.Fatalf("cluster did not come up: %q %v", info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		nc.Close()
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 8})
	t.Cleanup(func() { c.Client.Close() })
	// Every replica has synced with its master before the test starts.
	for _, n := range c.Nodes {
		waitReplicaSynced(t, n.Addr, deadline)
	}
	return c
}

// waitReplicaSynced waits, when addr is a replica, until its link to the master is up.
func waitReplicaSynced(t testing.TB, addr string, deadline time.Time) {
	t.Helper()
	nc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer nc.Close()
	for {
		info, err := nc.Info(context.Background(), "replication").Result()
		if err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not sync: %q %v", addr, info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RedisSentinel is a primary, a replica and 3 sentinels owned by one test.
type RedisSentinel struct {
	Master    string // the name the sentinels know the primary by
	Primary   *Redis // the primary at start
	Replica   *Redis // the replica at start
	Sentinels []*Redis
	Client    *redis.Client // a failover client
}

// SentinelAddrs returns the sentinels' addresses.
func (s *RedisSentinel) SentinelAddrs() []string {
	a := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		a[i] = n.Addr
	}
	return a
}

// StartSentinel starts a primary and its replica (AOF on) and 3 sentinels watching them
// (quorum 2, down-after 1000 ms); it returns once the sentinels know the replica. Everything
// stops with t.Cleanup.
func StartSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	lookRedis(t)
	s := &RedisSentinel{Master: "fsmaster"}
	var err error
	for range 5 {
		if s.Primary, err = startNode(t, FreePort(t)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start primary: %v", err)
	}
	host, port, _ := net.SplitHostPort(s.Primary.Addr)
	for range 5 {
		if s.Replica, err = startNode(t, FreePort(t), "--replicaof", host, port); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start replica: %v", err)
	}
	for len(s.Sentinels) < 3 {
		var n *Redis
		for range 5 {
			if n, err = startSentinelNode(t, s.Master, s.Primary.Addr); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("start sentinel: %v", err)
		}
		s.Sentinels = append(s.Sentinels, n)
	}
	deadline := time.Now().Add(30 * time.Second)
	waitReplicaSynced(t, s.Replica.Addr, deadline)
	for _, n := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		for {
			reps, err := sc.Replicas(context.Background(), s.Master).Result()
			others, err2 := sc.Sentinels(context.Background(), s.Master).Result()
			if err == nil && err2 == nil && len(reps) == 1 && len(others) == 2 {
				break
			}
			if time.Now().After(deadline) {
				sc.Close()
				t.Fatalf("sentinel %s does not see the set-up: replicas %v (%v), sentinels %v (%v)", n.Addr, reps, err, others, err2)
			}
			time.Sleep(50 * time.Millisecond)
		}
		sc.Close()
	}
	s.Client = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.Master, SentinelAddrs: s.SentinelAddrs()})
	t.Cleanup(func() { s.Client.Close() })
	return s
}

func startSentinelNode(t testing.TB, master, primary string) (*Redis, error) {
	dir := t.TempDir()
	port := FreePort(t)
	host, pport, _ := net.SplitHostPort(primary)
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
		"sentinel monitor %s %s %s 2\nsentinel down-after-milliseconds %s 1000\n"+
		"sentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
		port, dir, filepath.Join(dir, "redis.log"), master, host, pport, master, master, master)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	r := &Redis{t: t, Dir: dir, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), args: []string{conf, "--sentinel"}}
	if err := r.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(r.Kill)
	return r, nil
}

func lookRedis(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed (make test installs it): %v", bin, err)
		}
	}
}
