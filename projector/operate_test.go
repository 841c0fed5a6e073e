package projector_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// sale sells on two items, with one order that conflicts in MySQL and is restocked (its
// request_id was used again after the idempotency key expired), and projects everything.
func (e env) sale(t *testing.T) {
	t.Helper()
	e.setStock(t, "a", 100)
	e.setStock(t, "b", 80)
	e.buy(t, "a", "u0", "taken", 1)
	if err := e.rdb.HDel(context.Background(), e.l.Keys().Requests("a"), "taken").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 120 {
		e.buy(t, []string{"a", "b"}[i%2], fmt.Sprintf("u%d", i%7), fmt.Sprintf("r%d", i), 1)
	}
	e.buy(t, "a", "u1", "taken", 2)
	e.start(t, projector.Config{})
	e.waitSettled(t)
}

func TestReplayRebuildsTheSameOrders(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.sale(t)
	want := testenv.OrdersHash(t, e.db)
	store := projector.NewStore(e.db)

	// The sale's projector is still running, idle: only Force empties the tables under it.
	if _, err := projector.Replay(ctx, e.l, store, projector.ReplayOptions{Fresh: true}); !errors.As(err, new(*projector.LiveError)) {
		t.Fatalf("replay -fresh with a projector live: got %v, want a LiveError", err)
	}
	st, err := projector.Replay(ctx, e.l, store, projector.ReplayOptions{Fresh: true, Force: true, PageSize: 17})
	if err != nil {
		t.Fatal(err)
	}
	if st.Orders != 122 || st.Restocks != 1 || st.Stocks != 2 {
		t.Fatalf("replay saw %+v, want 122 orders, 1 restock, 2 stock changes", st)
	}
	if got := testenv.OrdersHash(t, e.db); got != want {
		t.Fatalf("after replay -fresh: got %s, want %s", got, want)
	}
	// Lose the table, migrate again, replay without -fresh.
	for _, q := range []string{"DROP TABLE orders", "DELETE FROM schema_migrations"} {
		if _, err := e.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := projector.Migrate(ctx, e.db); err != nil {
		t.Fatal(err)
	}
	if _, err := projector.Replay(ctx, e.l, store, projector.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := testenv.OrdersHash(t, e.db); got != want {
		t.Fatalf("after drop + migrate + replay: got %s, want %s", got, want)
	}
	// And once more changes nothing.
	if _, err := projector.Replay(ctx, e.l, store, projector.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := testenv.OrdersHash(t, e.db); got != want {
		t.Fatalf("after a second replay: got %s, want %s", got, want)
	}
}

func TestAuditFindsEachViolation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.sale(t)
	store := projector.NewStore(e.db)
	rep, err := projector.Audit(ctx, e.l, store, projector.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() || rep.Pending != 0 {
		t.Fatalf("audit after a clean sale: %+v", rep.Violations)
	}
	for _, it := range rep.Items {
		if it.Stock+it.Sold != it.PutOnSale || it.Confirmed != it.Sold || it.Cancelled != it.Restocked {
			t.Errorf("item %s does not add up: %+v", it.ItemID, it)
		}
	}

	var victim string
	if err := e.db.QueryRow("SELECT order_id FROM orders WHERE item_id = 'b' LIMIT 1").Scan(&victim); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		break_, fix func() error
		want        string
	}{
		{
			"counter raised by hand",
			func() error { return e.rdb.IncrBy(ctx, e.l.Keys().Stock("a"), 3).Err() },
			func() error { return e.rdb.DecrBy(ctx, e.l.Keys().Stock("a"), 3).Err() },
			"redis stock",
		},
		{
			"row deleted from MySQL",
			func() error { _, err := e.db.Exec("DELETE FROM orders WHERE order_id = ?", victim); return err },
			func() error { _, err := projector.Replay(ctx, e.l, store, projector.ReplayOptions{}); return err },
			"in the ledger but not in MySQL",
		},
		{
			"extra row in MySQL",
			func() error {
				_, err := e.db.Exec(`INSERT INTO orders (order_id, request_id, user_id, item_id, quantity, status, created_at, updated_at)
					VALUES ('1-5-0', 'ghost', 'u', 'b', 1, 'confirmed', NOW(), NOW())`)
				return err
			},
			func() error { _, err := e.db.Exec("DELETE FROM orders WHERE order_id = '1-5-0'"); return err },
			"not in the ledger",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.break_(); err != nil {
				t.Fatal(err)
			}
			rep, err := projector.Audit(ctx, e.l, store, projector.DefaultGroup)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Violations) != 1 || !strings.Contains(rep.Violations[0].What, tt.want) {
				t.Fatalf("got violations %+v, want one saying %q", rep.Violations, tt.want)
			}
			if err := tt.fix(); err != nil {
				t.Fatal(err)
			}
			if rep, err := projector.Audit(ctx, e.l, store, projector.DefaultGroup); err != nil || !rep.Clean() {
				t.Fatalf("after the fix: %+v (%v)", rep.Violations, err)
			}
		})
	}
}

// An order cancelled for a request_id conflict needs a live order with the byte-identical
// request_id of the same item; one that differs only by trailing spaces is no holder.
func TestAuditFlagsAConflictWithoutAHolder(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.sale(t) // holds a genuine conflict: "taken", whose holder is live
	store := projector.NewStore(e.db)
	if rep, err := projector.Audit(ctx, e.l, store, projector.DefaultGroup); err != nil || !rep.Clean() {
		t.Fatalf("audit with a genuine conflict: %+v (%v)", rep.Violations, err)
	}

	e.buy(t, "b", "u1", "pad-1", 1)
	padded := e.buy(t, "b", "u2", "pad-1 ", 1)
	e.waitSettled(t)
	// Cancel "pad-1 " as the projector did when MySQL compared IDs with PAD SPACE.
	ev, err := e.l.Order(ctx, padded)
	if err != nil {
		t.Fatal(err)
	}
	if done, err := e.l.Restock(ctx, ev, projector.ReasonRequestConflict); err != nil || !done {
		t.Fatalf("restock: done=%v err=%v", done, err)
	}
	e.waitSettled(t)
	rep, err := projector.Audit(ctx, e.l, store, projector.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) != 1 || rep.Violations[0].OrderID != padded || !strings.Contains(rep.Violations[0].What, "conflict-cancel without holder") {
		t.Fatalf("got violations %+v, want one conflict-cancel without holder for %s", rep.Violations, padded)
	}
}

// TestReplayFreshRefusesWhileProjectorsRun: projectors idle for many heartbeat TTLs (and for
// longer than XINFO CONSUMERS' idle time would call them live) still stop replay -fresh; one
// that stopped does not; a heartbeat left by a killed one stops it until it expires.
func TestReplayFreshRefusesWhileProjectorsRun(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.setStock(t, "a", 10)
	e.buy(t, "a", "u", "r1", 1)
	store := projector.NewStore(e.db)
	const beat = 100 * time.Millisecond
	ttl := projector.HeartbeatTTL * beat
	stop1 := e.run(t, projector.Config{Consumer: "c1", Heartbeat: beat})
	stop2 := e.run(t, projector.Config{Consumer: "c2", Heartbeat: beat, Workers: 2})
	t.Cleanup(stop2)
	e.waitSettled(t)
	time.Sleep(3 * ttl) // idle

	refused := func(want ...string) {
		t.Helper()
		_, err := projector.Replay(ctx, e.l, store, projector.ReplayOptions{Fresh: true})
		var live *projector.LiveError
		if !errors.As(err, &live) || !slices.Equal(live.Consumers, want) {
			t.Fatalf("replay -fresh: got %v, want refused for %v", err, want)
		}
		if len(e.statuses(t)) != 1 {
			t.Fatalf("replay -fresh refused but the orders table changed: %v", e.statuses(t))
		}
	}
	refused("c1", "c2-0", "c2-1")
	stop1() // a clean stop removes the heartbeat at once
	refused("c2-0", "c2-1")
	stop2()
	// A heartbeat left behind by a process that was killed: live until it expires.
	if err := e.l.Beat(ctx, []string{"killed"}, ttl); err != nil {
		t.Fatal(err)
	}
	refused("killed")
	time.Sleep(ttl + 20*time.Millisecond)
	if _, err := projector.Replay(ctx, e.l, store, projector.ReplayOptions{Fresh: true}); err != nil {
		t.Fatalf("replay -fresh after every projector stopped: %v", err)
	}
	if st := e.statuses(t); len(st) != 1 {
		t.Fatalf("after replay -fresh: got %v, want the one order back", st)
	}
}
