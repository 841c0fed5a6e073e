package ledger_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestTwoSweepersExpireEachOrderOnce runs two sweepers at once over the same due orders, some
// of them paid or cancelled meanwhile: every unpaid order expires exactly once and the stock
// gets back exactly the units of the expired and cancelled orders.
func TestTwoSweepersExpireEachOrderOnce(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	const orders = 60
	reserveItem(t, l, "s", orders, time.Hour)
	ids := make([]string, orders)
	for i := range ids {
		rc, err := buy(l, "s", fmt.Sprintf("u%d", i), fmt.Sprintf("q%d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = rc.OrderID
	}
	// A tenth pays in time, a tenth cancels.
	for i := 0; i < orders; i += 10 {
		if _, err := l.Pay(ctx, ids[i], fmt.Sprintf("u%d", i), "ref"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Cancel(ctx, ids[i+1], fmt.Sprintf("u%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		pastDue(t, l, rdb, id)
	}
	a, b := l.NewSweeper(time.Millisecond, 7, quiet), l.NewSweeper(time.Millisecond, 7, quiet)
	var wg sync.WaitGroup
	for _, s := range []*ledger.Sweeper{a, b} {
		wg.Go(func() {
			for range 3 {
				if _, err := s.Sweep(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := a.Expired() + b.Expired(); got != orders-12 {
		t.Fatalf("sweepers expired %d+%d orders, want %d", a.Expired(), b.Expired(), orders-12)
	}
	expired := map[string]int{}
	for _, e := range testenv.Events(t, l) {
		if e.Type == ledger.EventExpired {
			expired[e.OrderID]++
		}
	}
	for i, id := range ids {
		r, err := l.Reservation(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := ledger.StateExpired
		switch i % 10 {
		case 0:
			want = ledger.StatePaid
		case 1:
			want = ledger.StateCancelled
		}
		if r.State != want || (want == ledger.StateExpired) != (expired[id] == 1) || expired[id] > 1 {
			t.Fatalf("order %d: %s with %d expired events, want %s", i, r.State, expired[id], want)
		}
	}
	if stock, _ := rdb.Get(ctx, l.Keys().Stock("s")).Int64(); stock != orders-6 {
		t.Fatalf("stock %d, want %d (all but the paid)", stock, orders-6)
	}
	if n, _ := rdb.ZCard(ctx, l.Keys().Due(l.Keys().Partition("s"))).Result(); n != 0 || a.Lag() != 0 || a.Open() != 0 {
		t.Fatalf("%d orders still due, lag %s, %d open", n, a.Lag(), a.Open())
	}
}

// TestSweeperCatchesUpOnStart: orders that fell due while no sweeper ran are expired by the
// first round, before the first tick.
func TestSweeperCatchesUpOnStart(t *testing.T) {
	l, rdb := newLedger(t)
	reserveItem(t, l, "c", 5, time.Millisecond)
	for i := range 5 {
		if _, err := buy(l, "c", fmt.Sprintf("u%d", i), fmt.Sprintf("q%d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := l.NewSweeper(time.Hour, 2, quiet)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(5 * time.Second)
	for s.Expired() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if stock, _ := rdb.Get(context.Background(), l.Keys().Stock("c")).Int64(); s.Expired() != 5 || stock != 5 {
		t.Fatalf("expired %d, stock %d; want 5 and 5", s.Expired(), stock)
	}
}

// TestSweeperLag: a round does at most 100 batches per partition; what it leaves overdue shows
// as lag, and the next round catches up.
func TestSweeperLag(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	const n = 102
	reserveItem(t, l, "g", n, time.Hour)
	for i := range n {
		rc, err := buy(l, "g", fmt.Sprintf("u%d", i), fmt.Sprintf("q%d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		if i < n-1 {
			pastDue(t, l, rdb, rc.OrderID)
		}
	}
	s := l.NewSweeper(time.Second, 1, quiet)
	if _, err := s.Sweep(ctx); err != nil || s.Lag() < time.Hour || s.Expired() != 100 || s.Open() != 2 {
		t.Fatalf("first round: lag %s, expired %d, open %d (%v)", s.Lag(), s.Expired(), s.Open(), err)
	}
	if _, err := s.Sweep(ctx); err != nil || s.Lag() != 0 || s.Expired() != n-1 || s.Open() != 1 {
		t.Fatalf("second round: lag %s, expired %d, open %d (%v)", s.Lag(), s.Expired(), s.Open(), err)
	}
}
