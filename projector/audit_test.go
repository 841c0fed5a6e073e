package projector_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

// burst buys from several goroutines, on items of every partition, until stop is closed; one
// goroutine also puts units on sale and a new item on sale meanwhile. It returns the wait.
func (e env) burst(t *testing.T, items []string, stop <-chan struct{}) func() {
	t.Helper()
	var wg sync.WaitGroup
	var n atomic.Int64
	for g := range 6 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := n.Add(1)
				_, err := e.l.Purchase(context.Background(), ledger.PurchaseRequest{
					RequestID: fmt.Sprintf("g%d-%d", g, i), UserID: fmt.Sprintf("u%d", k%13),
					ItemID: items[int(k)%len(items)], Quantity: 1 + k%3,
				})
				if err != nil {
					t.Errorf("purchase: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			item := items[i%len(items)]
			if item == items[0] {
				// An add records the counter as it is, so that it would make the books agree
				// again after TestAuditCatchesViolationsDuringASale raised it by hand: that
				// item's stock is left alone (with 16 partitions the audit's cut is late
				// enough for an add to land in between).
				continue
			}
			if i%5 == 4 {
				item = fmt.Sprintf("late-%d", i) // an item the audit meets mid-fold
			}
			op := ledger.StockAdd
			if i%5 == 4 {
				op = ledger.StockSet
			}
			if _, err := e.l.SetStock(context.Background(), item, ledger.StockChange{Op: op, Quantity: 5}); err != nil {
				t.Errorf("stock %s: %v", item, err)
				return
			}
		}
	})
	return wg.Wait
}

func saleItems(e env, t *testing.T) []string {
	t.Helper()
	items := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, it := range items {
		e.setStock(t, it, 1_000_000)
	}
	return items
}

// Audit reads one cut of the books, so that while purchases, stock changes and the projector
// run, audit after audit reports clean books.
func TestAuditIsCleanDuringASale(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	items := saleItems(e, t)
	e.start(t, projector.Config{BatchSize: 16})
	store := projector.NewStore(e.db)
	stop := make(chan struct{})
	wait := e.burst(t, items, stop)
	end := sync.OnceFunc(func() { close(stop); wait() })
	defer end()

	inFlight := 0
	for range 12 {
		rep, err := projector.Audit(ctx, e.l, store, projector.DefaultGroup)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Clean() {
			t.Fatalf("audit during the sale: %d violations, first %+v", len(rep.Violations), rep.Violations[:min(5, len(rep.Violations))])
		}
		for _, it := range rep.Items {
			if it.Stock+it.Sold != it.PutOnSale {
				t.Errorf("item %s does not add up during the sale: %+v", it.ItemID, it)
			}
		}
		if rep.Pending > 0 {
			inFlight++
		}
	}
	end()
	if inFlight == 0 {
		t.Fatal("no audit ran while entries were in flight: the test did not test a running sale")
	}
	e.waitSettled(t)
	rep, err := projector.Audit(ctx, e.l, store, projector.DefaultGroup)
	if err != nil || !rep.Clean() || rep.Pending != 0 {
		t.Fatalf("audit after the sale: %+v, pending %d (%v)", rep.Violations, rep.Pending, err)
	}
	for _, it := range rep.Items {
		if it.Confirmed != it.Sold || it.Stock+it.Sold != it.PutOnSale {
			t.Errorf("item %s does not add up after the sale: %+v", it.ItemID, it)
		}
	}
}

// The cut hides nothing real: a counter changed by hand, a MySQL order before the cut that the
// ledger does not hold, and one past the stream's end are reported while the sale runs.
func TestAuditCatchesViolationsDuringASale(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	items := saleItems(e, t)
	e.start(t, projector.Config{BatchSize: 16})
	store := projector.NewStore(e.db)
	stop := make(chan struct{})
	wait := e.burst(t, items, stop)
	defer func() { close(stop); wait() }()
	time.Sleep(100 * time.Millisecond)

	p := e.l.Keys().Partition("a")
	tests := []struct {
		name        string
		break_, fix func() error
		item, want  string
	}{
		{
			"counter raised by hand",
			func() error { return e.rdb.IncrBy(ctx, e.l.Keys().Stock("a"), 89).Err() },
			func() error { // the runbook's repair, while the sale runs
				_, err := e.l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: -89})
				return err
			},
			"a", "redis stock",
		},
		{
			"row before the cut not in the ledger",
			func() error { return e.insertOrder(fmt.Sprintf("%d-1-0", p), "a") },
			func() error { return e.deleteOrder(fmt.Sprintf("%d-1-0", p)) },
			"a", "not in the ledger",
		},
		{
			"row past the stream's end",
			func() error { return e.insertOrder(fmt.Sprintf("%d-99999999999999-0", p), "a") },
			func() error { return e.deleteOrder(fmt.Sprintf("%d-99999999999999-0", p)) },
			"a", "not in the ledger",
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
			if len(rep.Violations) != 1 || rep.Violations[0].ItemID != tt.item || !strings.Contains(rep.Violations[0].What, tt.want) {
				t.Errorf("got violations %+v, want one of item %s saying %q", rep.Violations, tt.item, tt.want)
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

func (e env) insertOrder(orderID, item string) error {
	_, err := e.db.Exec(`INSERT INTO orders (order_id, request_id, user_id, item_id, quantity, status, created_at, updated_at)
		VALUES (?, 'ghost', 'u', ?, 1, 'confirmed', NOW(), NOW())`, orderID, item)
	return err
}

func (e env) deleteOrder(orderID string) error {
	_, err := e.db.Exec("DELETE FROM orders WHERE order_id = ?", orderID)
	return err
}
