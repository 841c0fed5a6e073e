// Package testenv starts the real services that flashsale's tests run against: a private
// redis-server per test (random port, temp dir, AOF on) and a private MySQL/MariaDB database
// per test on the server named by FLASHSALE_TEST_MYSQL_DSN. Everything it starts or creates is
// removed by t.Cleanup.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server process owned by one test.
type Redis struct {
	t      testing.TB
	Addr   string
	Dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	args   []string
}

// StartRedis starts a redis-server with appendonly yes and appendfsync always (no acknowledged write is lost when it is killed) on a free
// port in a temp dir, and returns it with a client. Both are closed by t.Cleanup.
func StartRedis(t testing.TB) (*Redis, *redis.Client) {
	t.Helper()
	return StartRedisWith(t)
}

// StartRedisWith is StartRedis with extra redis-server arguments, which override the defaults
// (e.g. "--maxmemory-policy", "allkeys-lru").
func StartRedisWith(t testing.TB, extraArgs ...string) (*Redis, *redis.Client) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (make test installs it): %v", err)
	}
	dir := t.TempDir()
	r := &Redis{t: t, Dir: dir}
	var lastErr error
	for range 5 {
		port := FreePort(t)
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		r.args = []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "",
			"--logfile", filepath.Join(dir, "redis.log"),
		}
		r.args = append(r.args, extraArgs...)
		if lastErr = r.Start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("start redis: %v", lastErr)
	}
	t.Cleanup(r.Kill)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	return r, rdb
}

// Start starts (or restarts, after Kill) the server on its port and dir, reading back its AOF,
// and waits until it answers.
func (r *Redis) Start() error {
	r.cmd = exec.Command("redis-server", r.args...)
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan error, 1)
	r.exited = make(chan struct{})
	go func() {
		exited <- r.cmd.Wait()
		close(r.exited)
	}()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
			return fmt.Errorf("redis-server exited: %v\n%s", err, log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil || redis.HasErrorPrefix(err, "NOAUTH") {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.kill()
	return fmt.Errorf("redis-server on %s did not answer in time", r.Addr)
}

// Kill stops the server with SIGKILL, as a crash would; Start brings it back from its AOF.
func (r *Redis) Kill() { r.kill() }

func (r *Redis) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// Pause stops the server with SIGSTOP: it keeps its connections and answers nothing, as a
// hung or partitioned node; Resume lets it go on.
func (r *Redis) Pause() { r.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() { r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Errorf("signal redis %s: %v", r.Addr, err)
	}
}

// FreePort returns a TCP port on 127.0.0.1 for a server that a test starts: free a moment
// ago, outside the kernel's ephemeral range (where an outgoing connection or a listener on
// port 0 could take it before the server binds it) and not returned before in this process.
// A server that still fails to bind it is started again on another (see StartRedisWith).
func FreePort(t testing.TB) int {
	t.Helper()
	return pickPort(t, 0)
}

// EphemeralRange returns the kernel's ephemeral port range (net.ipv4.ip_local_port_range),
// 32768-60999 when the system does not say.
func EphemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{} // handed out by pickPort
)

// pickPort returns a free port outside the ephemeral range; with pair > 0, port+pair is free,
// outside it and at most 65535 too (a Redis Cluster node's bus port is port+10000).
func pickPort(t testing.TB, pair int) int {
	t.Helper()
	lo, hi := EphemeralRange()
	const first, last = 10000, 65535
	usable := func(p int) bool { return p >= first && p <= last && (p < lo || p > hi) }
	var candidates []int
	for p := first; p <= last-pair; p++ {
		if usable(p) && (pair == 0 || usable(p+pair)) {
			candidates = append(candidates, p)
		}
	}
	if len(candidates) == 0 {
		t.Fatalf("no port in %d-%d outside the ephemeral range %d-%d (net.ipv4.ip_local_port_range)", first, last, lo, hi)
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		p := candidates[mrand.IntN(len(candidates))]
		if ports[p] || !bindable(p) || pair > 0 && !bindable(p+pair) {
			continue
		}
		ports[p] = true
		return p
	}
	t.Fatalf("no free port outside the ephemeral range %d-%d after 200 tries", lo, hi)
	return 0
}

// bindable reports whether a listener can bind 127.0.0.1:port now.
func bindable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// DefaultMySQLDSN is the server used when FLASHSALE_TEST_MYSQL_DSN is unset.
const DefaultMySQLDSN = "root@tcp(127.0.0.1:3306)/?parseTime=true"

// MySQL creates a database of its own for the test on the FLASHSALE_TEST_MYSQL_DSN server and
// returns its DSN and an open handle; the database is dropped by t.Cleanup.
func MySQL(t testing.TB) (string, *sql.DB) {
	t.Helper()
	base := os.Getenv("FLASHSALE_TEST_MYSQL_DSN")
	if base == "" {
		base = DefaultMySQLDSN
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("parse FLASHSALE_TEST_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("open mysql: %v", err)
	}
	defer admin.Close()
	name := "flashsale_test_" + RandomID(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database (is MariaDB running? make test starts it): %v", err)
	}
	cfg.DBName = name
	dsn := cfg.FormatDSN()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() {
		db.Close()
		admin, err := sql.Open("mysql", base)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE IF EXISTS " + name)
	})
	return dsn, db
}

// RandomID returns n random bytes in hex.
func RandomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// MySQLAddr returns the host:port of a MySQL DSN.
func MySQLAddr(t testing.TB, dsn string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	return cfg.Addr
}

// WithMySQLAddr returns dsn with its host:port replaced by addr (e.g. a Proxy's).
func WithMySQLAddr(t testing.TB, dsn, addr string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	cfg.Addr = addr
	return cfg.FormatDSN()
}

// OrdersHash hashes the orders table of db in order_id order, without updated_at (when a row
// was written), so that two projections of one ledger hash the same.
func OrdersHash(t testing.TB, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query("SELECT order_id, request_id, user_id, item_id, quantity, status, COALESCE(cancel_reason, ''), created_at FROM orders ORDER BY order_id")
	if err != nil {
		t.Fatalf("read orders: %v", err)
	}
	defer rows.Close()
	h := sha256.New()
	n := 0
	for rows.Next() {
		var id, req, user, item, status, reason string
		var qty int64
		var created time.Time
		if err := rows.Scan(&id, &req, &user, &item, &qty, &status, &reason, &created); err != nil {
			t.Fatalf("read orders: %v", err)
		}
		fmt.Fprintf(h, "%s|%s|%s|%s|%d|%s|%s|%d\n", id, req, user, item, qty, status, reason, created.UnixMilli())
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read orders: %v", err)
	}
	return fmt.Sprintf("%d rows, %x", n, h.Sum(nil))
}
