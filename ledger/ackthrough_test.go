package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestAckThroughMovesTheGroupWithoutDelivering: AckThrough acknowledges what is pending up to
// the position and moves the group's last delivered ID there, with an exact lag, never back
// and never past the stream's last entry, and without reading the entries (no XREADGROUP).
func TestAckThroughMovesTheGroupWithoutDelivering(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	setStock(t, l, "ack", 100)
	for i := range 10 {
		if _, err := buy(l, "ack", "u", fmt.Sprintf("r%d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	p := l.Keys().Partition("ack")
	key := l.Keys().Events(p)
	if err := l.EnsureGroup(ctx, p, "g"); err != nil {
		t.Fatal(err)
	}
	all, err := rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := len(all) // the stock event and the 10 orders
	// Two entries delivered (and so pending) before, as an older archiver left them.
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "old", Streams: []string{key, ">"}, Count: 2}).Err(); err != nil {
		t.Fatal(err)
	}
	group := func() redis.XInfoGroup {
		t.Helper()
		gs, err := rdb.XInfoGroups(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			if g.Name == "g" {
				return g
			}
		}
		t.Fatal("no group g")
		return redis.XInfoGroup{}
	}
	readGroups := func() int64 {
		t.Helper()
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "cmdstat_xreadgroup:") {
				var calls int64
				fmt.Sscanf(strings.TrimPrefix(line, "cmdstat_xreadgroup:"), "calls=%d", &calls)
				return calls
			}
		}
		return 0
	}
	before := readGroups()

	if err := l.AckThrough(ctx, p, "g", all[6].ID, 100); err != nil {
		t.Fatal(err)
	}
	g := group()
	if g.LastDeliveredID != all[6].ID || g.Pending != 0 || g.Lag != int64(n-7) || g.EntriesRead != 7 {
		t.Fatalf("after AckThrough(%s): last delivered %s, pending %d, lag %d, entries read %d; want %s, 0, %d, 7",
			all[6].ID, g.LastDeliveredID, g.Pending, g.Lag, g.EntriesRead, all[6].ID, n-7)
	}
	if got := readGroups(); got != before {
		t.Fatalf("AckThrough read the group %d times; want none", got-before)
	}

	// Never back.
	if err := l.AckThrough(ctx, p, "g", all[2].ID, 100); err != nil {
		t.Fatal(err)
	}
	if g := group(); g.LastDeliveredID != all[6].ID || g.Lag != int64(n-7) {
		t.Fatalf("AckThrough to an earlier ID moved the group to %s (lag %d); want it left at %s", g.LastDeliveredID, g.Lag, all[6].ID)
	}
	// Never past the stream's last entry.
	if err := l.AckThrough(ctx, p, "g", "99999999999999-0", 100); err != nil {
		t.Fatal(err)
	}
	if g := group(); g.LastDeliveredID != all[n-1].ID || g.Lag != 0 {
		t.Fatalf("AckThrough past the end: group at %s (lag %d); want the last entry %s, lag 0", g.LastDeliveredID, g.Lag, all[n-1].ID)
	}
	// A group that does not exist is an error, and nothing is created.
	if err := l.AckThrough(ctx, p, "nogroup", all[1].ID, 100); err == nil {
		t.Fatal("AckThrough of a missing group: no error")
	}
}
