package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// `flashsale pending` lists a pending `orders` entry once per order, each line with the
// entry's ID and the order's own.
func TestPendingListsEachOrderOfAnEntry(t *testing.T) {
	ctx := context.Background()
	srv, rdb := testenv.StartRedis(t)
	env := map[string]string{"FLASHSALE_REDIS_ADDR": srv.Addr}
	if out, _, err := runCmd(t, env, "stock", "set", "demo", "5"); err != nil {
		t.Fatalf("stock set: %v %s", err, out)
	}
	l, err := ledger.Open(ctx, rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := l.Keys().Partition("demo")
	ms := time.Now().UnixMilli() + 60_000
	id := fmt.Sprintf("%d-1", ms)
	values := []string{"v", "1", "type", "orders", "ts", fmt.Sprint(ms),
		"orders", "demo\x1fu1\x1fr1\x1f1\x1edemo\x1fu2\x1fr2\x1f2"}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: l.Keys().Events(p), ID: id, Values: values}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.EnsureGroup(ctx, p, projector.DefaultGroup); err != nil {
		t.Fatal(err)
	}
	// Read the stock event and the entry, and acknowledge the stock event only.
	events, err := l.ReadGroup(ctx, p, projector.DefaultGroup, "c1", ">", 10, 0)
	if err != nil || len(events) != 3 {
		t.Fatalf("read group: got %d events, %v", len(events), err)
	}
	if err := l.Ack(ctx, p, projector.DefaultGroup, events[0].StreamID); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, env, "pending")
	if err != nil {
		t.Fatalf("pending: %v\n%s", err, out)
	}
	for i, user := range []string{"u1", "u2"} {
		order := fmt.Sprintf("%d-%d-%d", p, ms, i)
		found := false
		for line := range strings.SplitSeq(out, "\n") {
			f := strings.Fields(line)
			found = found || len(f) > 7 && f[0] == fmt.Sprintf("%d/%s", p, id) && f[5] == order && f[7] == user
		}
		if !found {
			t.Errorf("pending lists no line of order %s of entry %s:\n%s", order, id, out)
		}
	}
}
