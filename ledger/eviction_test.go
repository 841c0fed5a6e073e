package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

func TestEvictionPolicy(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "noeviction"},
		{[]string{"--maxmemory-policy", "allkeys-lru"}, "allkeys-lru"},
		{[]string{"--maxmemory-policy", "volatile-ttl"}, "volatile-ttl"},
	} {
		_, rdb := testenv.StartRedisWith(t, tt.args...)
		if got, err := ledger.EvictionPolicy(ctx, rdb); err != nil || got != tt.want {
			t.Errorf("%v: got %q, %v; want %q", tt.args, got, err, tt.want)
		}
	}
	// CONFIG renamed away: an error that is not "unavailable", so that callers can go on.
	_, rdb := testenv.StartRedisWith(t, "--rename-command", "CONFIG", "")
	if _, err := ledger.EvictionPolicy(ctx, rdb); err == nil || errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("without CONFIG: got %v, want a refusal that is not ErrUnavailable", err)
	}
	srv, _ := testenv.StartRedis(t)
	srv.Kill()
	down := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer down.Close()
	if _, err := ledger.EvictionPolicy(ctx, down); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("redis down: got %v, want ErrUnavailable", err)
	}
}

// A Redis at maxmemory with noeviction refuses writes with OOM: nothing was written, so the
// caller is told to retry (503), and the retry with the same request_id succeeds once there is
// room again.
func TestOOMIsUnavailable(t *testing.T) {
	ctx := context.Background()
	_, rdb := testenv.StartRedisWith(t, "--maxmemory-policy", "noeviction")
	for _, cfg := range []ledger.Config{{}, {Pipeline: 4, Senders: 1}} {
		l, err := ledger.Open(ctx, rdb, cfg)
		if err != nil {
			t.Fatal(err)
		}
		setStock(t, l, "a", 10)
		if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
			t.Fatal(err)
		}
		before := dump(t, rdb)
		if _, err := buy(l, "a", "u", "oom", 1); !errors.Is(err, ledger.ErrUnavailable) {
			t.Fatalf("purchase at maxmemory (%+v): got %v, want ErrUnavailable", cfg, err)
		}
		if _, err := l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); !errors.Is(err, ledger.ErrUnavailable) {
			t.Fatalf("stock change at maxmemory: got %v, want ErrUnavailable", err)
		}
		if after := dump(t, rdb); after != before {
			t.Fatalf("refused writes changed Redis:\nbefore %s\nafter  %s", before, after)
		}
		if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := buy(l, "a", "u", "oom", 1); err != nil {
			t.Fatalf("retry after room was made: %v", err)
		}
		l.Close()
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
}
