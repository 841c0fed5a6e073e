package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// TestRequestIDsRotate sells one item, a new request every 50 ms, and retries the first request
// all along: it stays a duplicate for at least the idempotency TTL and is forgotten after about
// two (it then places a new order), while a request of half a second ago is a duplicate across
// every rotation, and the request hashes hold no more than about two TTLs of requests. Once the
// item sells no more, its last request is remembered for a TTL and forgotten after two.
func TestRequestIDsRotate(t *testing.T) {
	ctx := context.Background()
	_, rdb := testenv.StartRedis(t)
	const ttl = time.Second
	l, err := ledger.Open(ctx, rdb, ledger.Config{IdempotencyTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	setStock(t, l, "a", 1000)
	first, err := buy(l, "a", "alice", "first", 1)
	if err != nil {
		t.Fatal(err)
	}
	placed := time.Now()
	k := l.Keys()
	most, forgotten := int64(0), false
	var bobs []string // bob's orders, by request r<i>
	for i := 0; time.Since(placed) < 3*ttl; i++ {
		rc, err := buy(l, "a", "bob", fmt.Sprintf("r%d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		bobs = append(bobs, rc.OrderID)
		// A request of half a second ago, across the rotations too: from either generation.
		var dup *ledger.DuplicateError
		if j := i - 10; j >= 0 {
			if _, err := buy(l, "a", "bob", fmt.Sprintf("r%d", j), 1); !errors.As(err, &dup) || dup.OrderID != bobs[j] {
				t.Fatalf("retry of r%d: got %v, want a duplicate of %s", j, err, bobs[j])
			}
		}
		age := time.Since(placed)
		_, err = buy(l, "a", "alice", "first", 1)
		switch {
		case errors.As(err, &dup):
			if dup.OrderID != first.OrderID {
				t.Fatalf("retry after %s: duplicate of %s, want %s", age, dup.OrderID, first.OrderID)
			}
		case err == nil && age > ttl:
			forgotten = true
		default:
			t.Fatalf("retry %s after its order: got %v, want a duplicate", age, err)
		}
		if forgotten {
			break
		}
		n := rdb.HLen(ctx, k.Requests("a")).Val() + rdb.HLen(ctx, k.RequestsOld("a")).Val()
		most = max(most, n)
		time.Sleep(50 * time.Millisecond)
	}
	// 20 requests a second for two TTLs, and the retried one.
	if limit := int64(2*ttl/(50*time.Millisecond)) + 2; most > limit {
		t.Errorf("the request hashes held %d request_ids, want at most %d", most, limit)
	}
	if most == 0 {
		t.Fatal("no request hash")
	}
	if !forgotten {
		t.Fatalf("the first request was still remembered after %s, want it forgotten after at most about two TTLs", time.Since(placed))
	}
	if age := time.Since(placed); age > 2*ttl+300*time.Millisecond {
		t.Errorf("the first request was forgotten after %s, want at most about two TTLs", age)
	}

	// An item that sells no more: its last request is remembered for a TTL, and its request
	// hash expires at most two TTLs after its last order.
	quiet, err := buy(l, "a", "carol", "quiet", 1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl - 100*time.Millisecond)
	var dup *ledger.DuplicateError
	if _, err := buy(l, "a", "carol", "quiet", 1); !errors.As(err, &dup) || dup.OrderID != quiet.OrderID {
		t.Fatalf("retry within the TTL of the last order: got %v, want a duplicate of %s", err, quiet.OrderID)
	}
	time.Sleep(ttl + 300*time.Millisecond)
	if rc, err := buy(l, "a", "carol", "quiet", 1); err != nil {
		t.Fatalf("retry two TTLs after the last order: %+v, %v; want a new order", rc, err)
	}
}

// TestOlderLayoutIsMoved opens a ledger whose request_ids and per-user counters are string keys
// of their own, the older layout: Open moves them into the item's hashes, and purchases then
// answer from them as before.
func TestOlderLayoutIsMoved(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		_, rdb := testenv.StartRedis(t)
		olderLayoutIsMoved(t, rdb)
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a Redis Cluster")
		}
		olderLayoutIsMoved(t, testenv.StartCluster(t).Client)
	})
}

func olderLayoutIsMoved(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	l, err := ledger.Open(ctx, rdb, ledger.Config{Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	limit := int64(3)
	for _, item := range []string{"a", "b"} {
		if _, err := l.SetStock(ctx, item, ledger.StockChange{Op: ledger.StockSet, Quantity: 10, Limit: &limit}); err != nil {
			t.Fatal(err)
		}
	}
	k := l.Keys()
	if k.Partition("a") == k.Partition("b") {
		t.Fatal("items a and b share a partition")
	}
	tag := func(item string) string { return fmt.Sprintf("fs:{p%d}:", k.Partition(item)) }
	older := map[string]string{
		tag("a") + "req:a:r1":       "0-1-0|alice",
		tag("a") + "req:a:r:2":      "0-1-1|bob",
		tag("a") + "user:a:alice":   "2",
		tag("b") + "req:b:r1":       "1-1-0|alice",
		tag("b") + "user:b:u:colon": "3",
		tag("a") + "user:a:mallory": "1",
	}
	others := []string{tag("a") + "requests:a:x:y", tag("b") + "users-other:b:z"}
	for _, key := range others {
		older[key] = "not of the older layout"
	}
	for key, v := range older {
		if err := rdb.Set(ctx, key, v, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The partial counter of mallory: the hash already counts a unit of hers.
	rdb.HSet(ctx, k.Users("a"), "mallory", 1)
	rdb.HDel(ctx, k.Meta(), "layout")

	l, err = ledger.Open(ctx, rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for key := range older {
		kept := slices.Contains(others, key) // not of the older layout
		if n := rdb.Exists(ctx, key).Val(); (n == 1) != kept {
			t.Errorf("key %s: exists %d after Open, want it kept: %t", key, n, kept)
		}
	}
	if v := rdb.HGet(ctx, k.Meta(), "layout").Val(); v != "2" {
		t.Errorf("meta layout %q, want 2", v)
	}
	if ttl := rdb.PTTL(ctx, k.Requests("a")).Val(); ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("request hash TTL %s, want the keys' hour", ttl)
	}
	var dup *ledger.DuplicateError
	for _, c := range []struct{ item, user, req, order string }{
		{"a", "alice", "r1", "0-1-0"}, {"a", "bob", "r:2", "0-1-1"}, {"b", "alice", "r1", "1-1-0"},
	} {
		if _, err := buy(l, c.item, c.user, c.req, 1); !errors.As(err, &dup) || dup.OrderID != c.order {
			t.Errorf("%s retrying %s on %s: got %v, want a duplicate of %s", c.user, c.req, c.item, err, c.order)
		}
	}
	for _, c := range []struct {
		item, user string
		qty        int64
		want       error
	}{
		{"a", "alice", 2, ledger.ErrLimit}, {"a", "alice", 1, nil},
		{"b", "u:colon", 1, ledger.ErrLimit},
		{"a", "mallory", 2, ledger.ErrLimit}, {"a", "mallory", 1, nil},
	} {
		if _, err := buy(l, c.item, c.user, "new-"+c.user+c.item+fmt.Sprint(c.qty), c.qty); !errors.Is(err, c.want) {
			t.Errorf("%s buying %d of %s: got %v, want %v", c.user, c.qty, c.item, err, c.want)
		}
	}
}
