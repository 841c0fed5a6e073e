package ledger_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// startPair starts a primary and a replica that has synced with it.
func startPair(t *testing.T) (primary, replica *testenv.Redis, rdb *redis.Client) {
	t.Helper()
	primary, rdb = testenv.StartRedisWith(t, "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(primary.Addr)
	replica, rc := testenv.StartRedisWith(t, "--replicaof", host, port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := rc.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") && rdb.Wait(context.Background(), 1, 100*time.Millisecond).Val() == 1 {
			return primary, replica, rdb
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica did not sync: %q %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With MinReplicas 1 a purchase is answered only once the replica has it: with the replica
// there it succeeds; with the replica hung it is ErrNotReplicated (an ErrUnavailable: 503,
// retry with the same request_id), and the retry, once the replica is back, answers the order
// the first call placed; a stock change is held to the same rule. Direct calls and pipelines.
func TestMinReplicasWaitsForTheReplica(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  ledger.Config
	}{
		{"one call per round trip", ledger.Config{MinReplicas: 1, ReplicaTimeout: time.Second}},
		{"pipelined", ledger.Config{MinReplicas: 1, ReplicaTimeout: time.Second, Pipeline: 8, Senders: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) { testMinReplicas(t, tt.cfg) })
	}
}

func testMinReplicas(t *testing.T, cfg ledger.Config) {
	ctx := context.Background()
	_, replica, rdb := startPair(t)
	l, err := ledger.Open(ctx, rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	setStock(t, l, "a", 10)
	if _, err := buy(l, "a", "u1", "r1", 1); err != nil {
		t.Fatalf("with the replica up: %v", err)
	}

	replica.Pause()
	start := time.Now()
	_, err = buy(l, "a", "u2", "r2", 1)
	if !errors.Is(err, ledger.ErrNotReplicated) || !errors.Is(err, ledger.ErrUnavailable) {
		replica.Resume()
		t.Fatalf("with the replica hung: got %v, want ErrNotReplicated", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("the unconfirmed purchase took %s, want about the 1s timeout", d)
	}
	// A duplicate's answer is not confirmed either while the replica is away.
	var dup *ledger.DuplicateError
	if _, err := buy(l, "a", "u2", "r2", 1); !errors.Is(err, ledger.ErrNotReplicated) {
		t.Fatalf("retry with the replica hung: got %v, want ErrNotReplicated", err)
	}
	if _, err := l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); !errors.Is(err, ledger.ErrNotReplicated) {
		t.Fatalf("stock change with the replica hung: got %v, want ErrNotReplicated", err)
	}
	replica.Resume()

	_, err = buy(l, "a", "u2", "r2", 1)
	if !errors.As(err, &dup) {
		t.Fatalf("retry with the replica back: got %v, want the order placed by the first call", err)
	}
	orders := 0
	for _, e := range testenv.Events(t, l) {
		if e.Type == ledger.EventOrder {
			orders++
		}
	}
	if orders != 2 {
		t.Fatalf("%d orders in the ledger, want 2 (r1 and r2 once)", orders)
	}
	if _, err := buy(l, "a", "u3", "r3", 1); err != nil {
		t.Fatalf("with the replica back: %v", err)
	}
}

// An order that was answered ErrNotReplicated and then lost with its primary is placed anew by
// the retry on the promoted replica: never twice, never reported placed and lost.
func TestUnconfirmedOrderLostInFailoverIsPlacedByRetry(t *testing.T) {
	ctx := context.Background()
	primary, replica, rdb := startPair(t)
	cfg := ledger.Config{MinReplicas: 1, ReplicaTimeout: time.Second}
	l, err := ledger.Open(ctx, rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	setStock(t, l, "a", 10)
	// The replica is promoted (a failover) and so hears nothing more from the primary.
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	t.Cleanup(func() { rc.Close() })
	if err := rc.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(l, "a", "u", "r", 1); !errors.Is(err, ledger.ErrNotReplicated) {
		t.Fatalf("got %v, want ErrNotReplicated", err)
	}
	primary.Kill()                                         // the old primary dies with the order
	promoted, err := ledger.Open(ctx, rc, ledger.Config{}) // no replica left to wait for
	if err != nil {
		t.Fatal(err)
	}
	rcpt, err := buy(promoted, "a", "u", "r", 1)
	if err != nil {
		t.Fatalf("retry on the promoted replica: %v", err)
	}
	it, err := promoted.Item(ctx, "a")
	if err != nil || it.Stock != 9 {
		t.Fatalf("stock after the retry: %+v, %v; want 9", it, err)
	}
	n := 0
	for _, e := range testenv.Events(t, promoted) {
		if e.Type == ledger.EventOrder {
			n++
			if e.OrderID != rcpt.OrderID {
				t.Fatalf("order %s in the ledger, want only %s", e.OrderID, rcpt.OrderID)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}

// With MinReplicas the projector's reads hand over only entries the replicas have: with the
// replica hung a read fails (the entries stay pending on the consumer) and, once it is back,
// reading the consumer's pending entries returns them.
func TestMinReplicasReadsOnlyReplicatedEntries(t *testing.T) {
	ctx := context.Background()
	_, replica, rdb := startPair(t)
	l, err := ledger.Open(ctx, rdb, ledger.Config{MinReplicas: 1, ReplicaTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	setStock(t, l, "a", 10)
	p := l.Keys().Partition("a")
	if err := l.EnsureGroup(ctx, p, "g"); err != nil {
		t.Fatal(err)
	}
	replica.Pause()
	evs, err := l.ReadGroup(ctx, p, "g", "c", ">", 10, time.Millisecond)
	replica.Resume()
	if !errors.Is(err, ledger.ErrNotReplicated) || len(evs) != 0 {
		t.Fatalf("read with the replica hung: got %d events, %v; want ErrNotReplicated", len(evs), err)
	}
	evs, err = l.ReadGroup(ctx, p, "g", "c", "0", 10, 0)
	if err != nil || len(evs) != 1 || evs[0].Type != ledger.EventStock {
		t.Fatalf("pending read with the replica back: got %+v, %v; want the stock event", evs, err)
	}
}
