package ledger_test

import (
	"context"
	"errors"
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
