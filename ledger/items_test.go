package ledger_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

func TestItemsListsEveryPartition(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	var want []string
	for i := range 12 {
		id := fmt.Sprintf("item-%02d", i)
		setStock(t, l, id, int64(i))
		want = append(want, id)
	}
	// Refused changes do not index an item.
	if _, err := l.SetStock(ctx, "never", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); err == nil {
		t.Fatal("add on an unknown item succeeded")
	}
	got, err := l.Items(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("items: got %v, want %v", got, want)
	}
	// Each item sits in its own partition's set, under that partition's hash tag.
	for _, id := range want {
		k := l.Keys().Items(l.Keys().Partition(id))
		if ok, err := rdb.SIsMember(ctx, k, id).Result(); err != nil || !ok {
			t.Fatalf("%s not in %s: %v", id, k, err)
		}
	}
}

func TestTallyFoldsLikeTheCounter(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	setStock(t, l, "a", 5)
	for i := range 3 {
		if _, err := buy(l, "a", fmt.Sprintf("u%d", i), fmt.Sprintf("r%d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	setStock(t, l, "a", 4) // put on sale: 4 + 3 sold
	if _, err := l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	var last ledger.Event
	for i := range 6 {
		rc, err := buy(l, "a", fmt.Sprintf("v%d", i), fmt.Sprintf("s%d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		last, err = l.Order(ctx, rc.OrderID)
		if err != nil {
			t.Fatal(err)
		}
	}
	var tl ledger.Tally
	for _, e := range testenv.Events(t, l) {
		if e.ItemID == "a" {
			tl.Apply(e)
		}
	}
	it, err := l.Item(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Tally{PutOnSale: 9, Sold: 9, Stock: 0, Orders: 9, SoldOutAt: last.Time}
	if tl != want || it.Stock != tl.Stock {
		t.Fatalf("tally %+v (redis stock %d), want %+v", tl, it.Stock, want)
	}
	if tl.SoldOutAt.IsZero() || time.Since(tl.SoldOutAt) > time.Minute {
		t.Fatalf("sold out at %v", tl.SoldOutAt)
	}
	// A restock ends the sold-out state.
	if _, err := l.Restock(ctx, last, "test"); err != nil {
		t.Fatal(err)
	}
	evs := testenv.Events(t, l)
	tl.Apply(evs[len(evs)-1])
	if tl.Stock != 1 || tl.Sold != 8 || tl.Restocked != 1 || !tl.SoldOutAt.IsZero() {
		t.Fatalf("after restock: %+v", tl)
	}
}
