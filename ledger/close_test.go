package ledger_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// TestClosedDrawIsCleaned: the cleanup of a closed draw item waits until its draw is settled
// (winners paid or closed, the waitlist ended), then deletes its entries, waitlist and held
// set with the per-order keys; its draw state stays, so that the draw is not run again.
func TestClosedDrawIsCleaned(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	k := l.Keys()
	const through = "99999999999999-0" // the projector has acknowledged everything
	at := newDraw(t, l, "lot", 2, 2*time.Second, time.Hour)
	orders := enterAll(t, l, "lot", 5)
	drawKeys := []string{k.DrawEntries("lot"), k.DrawState("lot"), k.Waitlist("lot"), k.Held("lot")}
	exists := func() int64 {
		t.Helper()
		n, err := rdb.Exists(ctx, drawKeys...).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	cleanup := func(want bool) {
		t.Helper()
		if done, err := l.Cleanup(ctx, "lot", through); err != nil || done != want {
			t.Fatalf("cleanup: %v (%v), want %v", done, err, want)
		}
	}
	if _, err := l.CloseItem(ctx, "lot"); err != nil {
		t.Fatal(err)
	}
	cleanup(false) // entries registered: the draw has not run
	waitRedisTime(t, l, at)
	if _, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := exists(); n != 4 {
		t.Fatalf("after the draw: %d of the draw's 4 keys, want all", n)
	}
	cleanup(false) // winners reserved, a waitlist
	st := states(t, l, orders)
	for user, state := range st {
		if state == ledger.StateReserved {
			if _, err := l.Pay(ctx, orders[user], user, "pay-"+user); err != nil {
				t.Fatal(err)
			}
		}
	}
	cleanup(false) // the waitlist still waits
	sw := l.NewSweeper(time.Second, 10, slog.New(slog.DiscardHandler))
	for range 3 { // marks the waitlist lost, then takes the item out of the drawn items
		if _, err := sw.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cleanup(true)
	if n, err := rdb.Exists(ctx, k.DrawEntries("lot"), k.Waitlist("lot"), k.Held("lot")).Result(); err != nil || n != 0 {
		t.Fatalf("after the cleanup: %d of the entries, waitlist and held set left (%v), want none", n, err)
	}
	if n, err := rdb.Exists(ctx, k.DrawState("lot")).Result(); err != nil || n != 1 {
		t.Fatalf("after the cleanup: draw state gone (%v), want it kept", err)
	}
	if keys, err := rdb.Keys(ctx, "*order:*").Result(); err != nil || len(keys) != 0 {
		t.Fatalf("after the cleanup: order state hashes %v (%v), want none", keys, err)
	}
	res, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{})
	if err != nil || res.Batches != 0 {
		t.Fatalf("draw run again after the cleanup: %+v (%v), want nothing written", res, err)
	}
}
