package ledger_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/lua"
	"github.com/flashsale/flashsale/tests/testenv"
)

func TestStockBounds(t *testing.T) {
	ctx := context.Background()
	l, rdb := newLedger(t)
	add := func(n int64) (int64, error) {
		return l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: n})
	}
	setStock(t, l, "a", ledger.MaxStock/2)
	if n, err := add(ledger.MaxStock / 2); err != nil || n != ledger.MaxStock {
		t.Fatalf("add up to the maximum: got %d, %v", n, err)
	}
	before := dump(t, rdb)
	for _, ch := range []ledger.StockChange{
		{Op: ledger.StockAdd, Quantity: 1},
		{Op: ledger.StockAdd, Quantity: ledger.MaxStock},
	} {
		n, err := l.SetStock(ctx, "a", ch)
		if !errors.Is(err, ledger.ErrTooMuchStock) || n != ledger.MaxStock {
			t.Fatalf("%+v: got %d, %v; want %d, ErrTooMuchStock", ch, n, err, ledger.MaxStock)
		}
	}
	for _, ch := range []ledger.StockChange{
		{Op: ledger.StockSet, Quantity: ledger.MaxStock + 1},
		{Op: ledger.StockAdd, Quantity: ledger.MaxStock + 1},
	} {
		if _, err := l.SetStock(ctx, "a", ch); !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("%+v: got %v, want ErrInvalid", ch, err)
		}
	}
	if after := dump(t, rdb); after != before {
		t.Fatalf("refused changes changed Redis:\nbefore %s\nafter  %s", before, after)
	}
	if n, err := add(-ledger.MaxStock); err != nil || n != 0 {
		t.Fatalf("take all off sale: got %d, %v", n, err)
	}
	if _, err := add(-1); !errors.Is(err, ledger.ErrNegativeStock) {
		t.Fatalf("got %v, want ErrNegativeStock", err)
	}

	// A restock gives back units sold and may leave the stock above the maximum; the rules
	// can still change and units can be taken off, but none added.
	p := l.Keys().Partition("a")
	if err := l.EnsureGroup(ctx, p, "projector"); err != nil {
		t.Fatal(err)
	}
	setStock(t, l, "a", 5)
	if _, err := buy(l, "a", "u", "r", 3); err != nil {
		t.Fatal(err)
	}
	setStock(t, l, "a", ledger.MaxStock)
	evs, err := l.ReadGroup(ctx, p, "projector", "c", ">", 100, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Type == ledger.EventOrder {
			if _, err := l.Restock(ctx, e, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	limit := int64(2)
	if n, err := l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Limit: &limit}); err != nil || n != ledger.MaxStock+3 {
		t.Fatalf("rules only, above the maximum: got %d, %v", n, err)
	}
	if _, err := add(1); !errors.Is(err, ledger.ErrTooMuchStock) {
		t.Fatalf("add above the maximum: got %v, want ErrTooMuchStock", err)
	}
	if n, err := add(-1); err != nil || n != ledger.MaxStock+2 {
		t.Fatalf("take one off above the maximum: got %d, %v", n, err)
	}
}

// The scripts write numbers as integers however large: an event or counter written as
// "1e+14" would be malformed for every reader. The stock script is run directly with a
// maximum above MaxStock to get there.
func TestLargeNumbersAreWrittenAsIntegers(t *testing.T) {
	ctx := context.Background()
	l, rdb := newLedger(t)
	k := l.Keys()
	p := k.Partition("big")
	if err := l.EnsureGroup(ctx, p, "projector"); err != nil {
		t.Fatal(err)
	}
	setStock(t, l, "big", 10)
	keys := []string{k.Stock("big"), k.Rules("big"), k.Events(p), k.Items(p)}
	const huge = 100_000_000_000_000 // 1e14: tostring gives "1e+14"
	if err := redis.NewScript(lua.Stock).Run(ctx, rdb, keys, "big", "add", huge, "", "", "", 1000, int64(10*huge)).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(l, "big", "u", "r", 3); err != nil {
		t.Fatal(err)
	}
	evs, err := l.ReadGroup(ctx, p, "projector", "c", ">", 10, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	order := evs[len(evs)-1]
	if order.Type != ledger.EventOrder {
		t.Fatalf("last event %+v, want the order", order)
	}
	if done, err := l.Restock(ctx, order, "test"); err != nil || !done {
		t.Fatalf("restock: %v, %v", done, err)
	}

	msgs, err := rdb.XRange(ctx, k.Events(p), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		for _, f := range []string{"v", "quantity", "stock", "limit", "start_ms", "end_ms", "ts"} {
			s, ok := m.Values[f].(string)
			if _, err := strconv.ParseInt(s, 10, 64); ok && err != nil {
				t.Errorf("entry %s: field %s = %q is not an integer", m.ID, f, s)
			}
		}
	}
	var fold int64
	for _, e := range testenv.Events(t, l) {
		if e.Malformed != nil {
			t.Fatalf("malformed event: %v", e.Malformed)
		}
		switch {
		case e.Type == ledger.EventStock && e.Op == ledger.StockSet:
			fold = e.Quantity
		case e.Type == ledger.EventStock:
			fold += e.Quantity
			if e.Stock != fold {
				t.Errorf("stock event says %d after the add, want %d", e.Stock, fold)
			}
		case e.Type == ledger.EventOrder:
			fold -= e.Quantity
		case e.Type == ledger.EventRestock:
			fold += e.Quantity
		}
	}
	counter, err := rdb.Get(ctx, k.Stock("big")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := "100000000000010"; counter != want || fold != huge+10 {
		t.Fatalf("got counter %q and fold %d, want %s", counter, fold, want)
	}
}

func TestSaleWindowBounds(t *testing.T) {
	ctx := context.Background()
	l, rdb := newLedger(t)
	at := func(s string) *time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return &tm
	}
	if _, err := l.SetStock(ctx, "early", ledger.StockChange{Op: ledger.StockSet, Quantity: 5, End: at("2030-01-01T00:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetStock(ctx, "late", ledger.StockChange{Op: ledger.StockSet, Quantity: 5, Start: at("2030-01-01T00:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	epoch, before1970 := time.UnixMilli(0), time.UnixMilli(-1)
	tests := []struct {
		name, item string
		ch         ledger.StockChange
	}{
		{"start after the end in force", "early", ledger.StockChange{Op: ledger.StockAdd, Start: at("2031-01-01T00:00:00Z")}},
		{"start at the end in force", "early", ledger.StockChange{Op: ledger.StockAdd, Start: at("2030-01-01T00:00:00Z")}},
		{"end before the start in force", "late", ledger.StockChange{Op: ledger.StockAdd, End: at("2029-01-01T00:00:00Z")}},
		{"start before 1970", "early", ledger.StockChange{Op: ledger.StockAdd, Start: &before1970}},
		{"end at the epoch", "late", ledger.StockChange{Op: ledger.StockAdd, End: &epoch}},
		{"new item before 1970", "new", ledger.StockChange{Op: ledger.StockSet, Quantity: 1, End: &before1970}},
		{"item .", ".", ledger.StockChange{Op: ledger.StockSet, Quantity: 1}},
		{"item ..", "..", ledger.StockChange{Op: ledger.StockSet, Quantity: 1}},
	}
	before := dump(t, rdb)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := l.SetStock(ctx, tt.item, tt.ch); !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	if after := dump(t, rdb); after != before {
		t.Fatalf("refused changes changed Redis:\nbefore %s\nafter  %s", before, after)
	}
	// Moving both bounds at once, or clearing the one in the way, is fine.
	open := time.Time{}
	for _, ch := range []ledger.StockChange{
		{Op: ledger.StockAdd, Start: at("2031-01-01T00:00:00Z"), End: at("2032-01-01T00:00:00Z")},
		{Op: ledger.StockAdd, End: &open},
		{Op: ledger.StockAdd, Start: at("2040-01-01T00:00:00Z")},
	} {
		if _, err := l.SetStock(ctx, "early", ch); err != nil {
			t.Fatalf("%+v: %v", ch, err)
		}
	}
	it, err := l.Item(ctx, "early")
	if err != nil || !it.Start.Equal(*at("2040-01-01T00:00:00Z")) || !it.End.IsZero() {
		t.Fatalf("got %+v, %v; want start 2040 and no end", it, err)
	}
}
