package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/tests/testenv"
)

// syncBuffer is a bytes.Buffer that a running command and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runBounded is runCmd for a command that must refuse to start: should it start, it is
// stopped after a few seconds (and then returns without error).
func runBounded(t *testing.T, env map[string]string, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	return run(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
}

// Every command that opens the ledger refuses a Redis that may evict keys, before writing
// anything, unless told to run anyway.
func TestEvictingRedisIsRefused(t *testing.T) {
	_, rdb := testenv.StartRedisWith(t, "--maxmemory-policy", "allkeys-lru")
	addr := rdb.Options().Addr
	env := map[string]string{"FLASHSALE_REDIS_ADDR": addr, "FLASHSALE_MYSQL_DSN": "u@tcp(127.0.0.1:1)/x"}
	for _, args := range [][]string{
		{"serve", "-http", "127.0.0.1:0", "-grpc", "127.0.0.1:0"},
		{"ingest", "-http", "127.0.0.1:0", "-grpc", "127.0.0.1:0"},
		{"project"},
		{"stock", "set", "demo", "5"},
	} {
		err := runBounded(t, env, args...)
		if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "maxmemory-policy allkeys-lru") || !strings.Contains(fmt.Sprint(err), "noeviction") {
			t.Fatalf("%v: got exit %d (%v), want 1 naming the policy and noeviction", args, exitCode(err), err)
		}
	}
	if n, err := rdb.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("refused commands left %d keys (%v), want none", n, err)
	}

	// The override warns and runs.
	out, stderr, err := runCmd(t, map[string]string{"FLASHSALE_REDIS_ADDR": addr, "FLASHSALE_ALLOW_EVICTION": "1"}, "stock", "set", "demo", "5")
	if err != nil || out != "demo stock 5\n" || !strings.Contains(stderr, "maxmemory-policy is allkeys-lru") {
		t.Fatalf("with FLASHSALE_ALLOW_EVICTION: got %q, %v, stderr %q", out, err, stderr)
	}
}

func TestServeStartsOnEvictingRedisOnlyWhenAllowed(t *testing.T) {
	_, rdb := testenv.StartRedisWith(t, "--maxmemory-policy", "allkeys-lru")
	dsn, _ := testenv.MySQL(t)
	env := map[string]string{"FLASHSALE_REDIS_ADDR": rdb.Options().Addr, "FLASHSALE_MYSQL_DSN": dsn, "FLASHSALE_ARCHIVE": "none"}
	if _, _, err := runCmd(t, env, "migrate"); err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args := []string{"serve", "-http", httpAddr, "-grpc", grpcAddr}
	if err := runBounded(t, env, args...); exitCode(err) != 1 {
		t.Fatalf("serve without -allow-eviction: got exit %d (%v), want 1", exitCode(err), err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = run(ctx, append(args, "-allow-eviction"), func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("serve -allow-eviction exited: %v\n%s", runErr, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve -allow-eviction did not answer /health\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "maxmemory-policy is allkeys-lru") {
		t.Fatalf("no warning about the eviction policy in\n%s", stderr.String())
	}
	cancel()
	<-done
	if runErr != nil {
		t.Fatalf("serve stopped with %v", runErr)
	}
}

// A Redis that refuses CONFIG (renamed away) cannot be checked: a warning, and the command runs.
func TestEvictionCheckWithoutConfig(t *testing.T) {
	_, rdb := testenv.StartRedisWith(t, "--rename-command", "CONFIG", "")
	out, stderr, err := runCmd(t, map[string]string{"FLASHSALE_REDIS_ADDR": rdb.Options().Addr}, "stock", "set", "demo", "5")
	if err != nil || out != "demo stock 5\n" || !strings.Contains(stderr, "cannot read Redis maxmemory-policy") {
		t.Fatalf("got %q, %v, stderr %q", out, err, stderr)
	}
}
