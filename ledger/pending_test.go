package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

func TestPendingShowsUnacknowledgedEntries(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t)
	setStock(t, l, "a", 100)
	ids := map[string]bool{}
	for i := range 5 {
		rc, err := buy(l, "a", fmt.Sprintf("u%d", i), fmt.Sprintf("r%d", i), 2)
		if err != nil {
			t.Fatal(err)
		}
		ids[rc.OrderID] = true
	}
	p := l.Keys().Partition("a")
	if err := l.EnsureGroup(ctx, p, "g"); err != nil {
		t.Fatal(err)
	}
	// "slow" reads the stock event and the orders twice (a redelivery) and acks nothing.
	for range 2 {
		if _, err := l.ReadGroup(ctx, p, "g", "slow", "0", 100, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := l.ReadGroup(ctx, p, "g", "slow", ">", 100, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(30 * time.Millisecond)

	rep, err := l.Pending(ctx, "g", ledger.PendingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var sum ledger.PendingSummary
	for _, s := range rep.Partitions {
		if s.Partition == p {
			sum = s
		}
	}
	if sum.Count != 6 || sum.Consumers["slow"] != 6 {
		t.Fatalf("summary: got %+v, want 6 entries held by slow", sum)
	}
	orders := 0
	for _, e := range rep.Entries {
		if e.Consumer != "slow" || e.Deliveries != 2 || e.IdleMS < 20 {
			t.Errorf("entry %+v: want consumer slow, 2 deliveries, idle >= 20ms", e)
		}
		if e.Type == "order" {
			orders++
			if !ids[e.OrderID] || e.ItemID != "a" || e.Quantity != 2 || e.UserID == "" {
				t.Errorf("entry %+v does not carry its order", e)
			}
		}
	}
	if orders != 5 {
		t.Fatalf("got %d order entries, want 5", orders)
	}

	tests := []struct {
		name string
		f    ledger.PendingFilter
		want int
		more bool
	}{
		{"other item", ledger.PendingFilter{ItemID: "zzz"}, 0, false},
		{"other consumer", ledger.PendingFilter{Consumer: "fast"}, 0, false},
		{"long idle", ledger.PendingFilter{MinIdle: time.Hour}, 0, false},
		{"limit", ledger.PendingFilter{Limit: 2}, 2, true},
		{"item", ledger.PendingFilter{ItemID: "a", Consumer: "slow"}, 6, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := l.Pending(ctx, "g", tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Entries) != tt.want || rep.Truncated != tt.more {
				t.Fatalf("got %d entries (truncated %v), want %d (%v)", len(rep.Entries), rep.Truncated, tt.want, tt.more)
			}
		})
	}
}

func TestGroupLagSurvivesDeletedEntries(t *testing.T) {
	ctx := context.Background()
	l, rdb := newLedger(t)
	setStock(t, l, "a", 10)
	for i := range 3 {
		if _, err := buy(l, "a", "u", fmt.Sprintf("r%d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	p := l.Keys().Partition("a")
	if err := l.EnsureGroup(ctx, p, "g"); err != nil {
		t.Fatal(err)
	}
	evs, err := l.Range(ctx, p, "", 10)
	if err != nil || len(evs) != 4 {
		t.Fatalf("got %d events (%v), want 4", len(evs), err)
	}
	if err := rdb.XDel(ctx, l.Keys().Events(p), evs[2].StreamID).Err(); err != nil {
		t.Fatal(err)
	}
	g, err := l.GroupInfo(ctx, p, "g")
	if err != nil {
		t.Fatal(err)
	}
	if g.Lag != 3 {
		t.Fatalf("got lag %d, want 3", g.Lag)
	}
}
