package ledger_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

func dur(d time.Duration) *time.Duration { return &d }

func TestPayWithinRule(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	steps := []struct {
		ch   ledger.StockChange
		want time.Duration
		err  error
	}{
		{ledger.StockChange{Op: ledger.StockSet, Quantity: 5, PayWithin: dur(15 * time.Minute)}, 15 * time.Minute, nil},
		{ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}, 15 * time.Minute, nil},
		{ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(-time.Second)}, 15 * time.Minute, ledger.ErrInvalid},
		{ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(ledger.MaxPayWithin + time.Millisecond)}, 15 * time.Minute, ledger.ErrInvalid},
		{ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(time.Microsecond)}, 15 * time.Minute, ledger.ErrInvalid},
		{ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(0)}, 0, nil},
	}
	for i, s := range steps {
		_, err := l.SetStock(ctx, "x", s.ch)
		if !errors.Is(err, s.err) || (s.err == nil) != (err == nil) {
			t.Fatalf("step %d: got %v, want %v", i, err, s.err)
		}
		it, err := l.Item(ctx, "x")
		if err != nil || it.PayWithin != s.want {
			t.Fatalf("step %d: pay-within %s (%v), want %s", i, it.PayWithin, err, s.want)
		}
	}
	var got []int64
	for _, e := range testenv.Events(t, l) {
		if e.Type == ledger.EventStock {
			got = append(got, e.PayWithinMS)
		}
	}
	want := []int64{900000, 900000, 0}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("stock events' pay_within_ms %v, want %v", got, want)
	}
}

func TestPurchaseReservesUnderPayWithin(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	k := l.Keys()
	setStock(t, l, "free", 5)
	if _, err := l.SetStock(ctx, "paid", ledger.StockChange{Op: ledger.StockSet, Quantity: 5, PayWithin: dur(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	free, err := buy(l, "free", "u1", "r1", 1)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	rsv, err := buy(l, "paid", "u1", "r1", 2)
	if err != nil {
		t.Fatal(err)
	}
	pf, pp := k.Partition("free"), k.Partition("paid")
	if n, _ := rdb.Exists(ctx, k.Order(pf, free.OrderID)).Result(); n != 0 {
		t.Fatalf("an order without a pay-within rule has a state hash")
	}
	if n, _ := rdb.ZCard(ctx, k.Due(pf)).Result(); pf != pp && n != 0 {
		t.Fatalf("an order without a pay-within rule is due")
	}
	h, err := rdb.HGetAll(ctx, k.Order(pp, rsv.OrderID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if h["state"] != "reserved" || h["user_id"] != "u1" || h["item_id"] != "paid" || h["quantity"] != "2" || h["request_id"] != "r1" {
		t.Fatalf("order state %v", h)
	}
	score, err := rdb.ZScore(ctx, k.Due(pp), rsv.OrderID).Result()
	if err != nil || strconv.FormatInt(int64(score), 10) != h["pay_by"] {
		t.Fatalf("due score %v (%v), want pay_by %s", score, err, h["pay_by"])
	}
	for _, e := range testenv.Events(t, l) {
		if e.Type != ledger.EventOrder {
			continue
		}
		switch e.OrderID {
		case free.OrderID:
			if !e.PayBy.IsZero() {
				t.Fatalf("order without the rule has pay_by %v", e.PayBy)
			}
		case rsv.OrderID:
			if got := e.PayBy.Sub(e.Time); got != time.Minute || e.Time.Before(before.Add(-time.Second)) {
				t.Fatalf("pay_by - ts = %s, want 1m", got)
			}
		}
	}
}
