package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

func newLedger(t *testing.T) (*ledger.Ledger, *redis.Client) {
	t.Helper()
	_, rdb := testenv.StartRedis(t)
	l, err := ledger.Open(context.Background(), rdb, ledger.Config{})
	if err != nil {
		t.Fatalf("open ledger: %v", err)
	}
	return l, rdb
}

func setStock(t *testing.T, l *ledger.Ledger, item string, n int64) {
	t.Helper()
	if _, err := l.SetStock(context.Background(), item, ledger.StockChange{Op: ledger.StockSet, Quantity: n}); err != nil {
		t.Fatalf("set stock: %v", err)
	}
}

func buy(l *ledger.Ledger, item, user, req string, qty int64) (ledger.Receipt, error) {
	return l.Purchase(context.Background(), ledger.PurchaseRequest{RequestID: req, UserID: user, ItemID: item, Quantity: qty})
}

func TestPurchaseNeverOversells(t *testing.T) {
	l, _ := newLedger(t)
	const stock, buyers = 50, 400
	setStock(t, l, "hot", stock)

	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[string]string{}
	soldOut := 0
	for i := range buyers {
		wg.Go(func() {
			req := fmt.Sprintf("r%d", i)
			rc, err := buy(l, "hot", fmt.Sprintf("u%d", i), req, 1)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won[rc.OrderID] = req
			case errors.Is(err, ledger.ErrSoldOut):
				soldOut++
			default:
				t.Errorf("purchase %s: %v", req, err)
			}
		})
	}
	wg.Wait()
	if len(won) != stock || soldOut != buyers-stock {
		t.Fatalf("got %d orders and %d sold out, want %d and %d", len(won), soldOut, stock, buyers-stock)
	}
	it, err := l.Item(context.Background(), "hot")
	if err != nil || it.Stock != 0 {
		t.Fatalf("stock after sale: got %d (%v), want 0", it.Stock, err)
	}
	orders := 0
	for _, e := range testenv.Events(t, l) {
		if e.Malformed != nil {
			t.Fatalf("malformed event: %v", e.Malformed)
		}
		if e.Type != ledger.EventOrder {
			continue
		}
		orders++
		req, ok := won[e.OrderID]
		if !ok || e.RequestID != req || e.ItemID != "hot" || e.Quantity != 1 || e.UserID != "u"+req[1:] {
			t.Errorf("order event %+v does not match an acknowledged order", e)
		}
	}
	if orders != stock {
		t.Fatalf("got %d order events, want %d", orders, stock)
	}
}

func TestPurchaseRules(t *testing.T) {
	ctx := context.Background()
	l, rdb := newLedger(t)
	setStock(t, l, "a", 10)
	limit := int64(3)
	if _, err := l.SetStock(ctx, "limited", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, Limit: &limit}); err != nil {
		t.Fatal(err)
	}
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	if _, err := l.SetStock(ctx, "early", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, Start: &future}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetStock(ctx, "late", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, End: &past}); err != nil {
		t.Fatal(err)
	}

	first, err := buy(l, "a", "u1", "dup", 2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		item, user, req string
		qty             int64
		want            error
	}{
		{"duplicate", "a", "u1", "dup", 2, ledger.ErrDuplicate},
		{"request_id of another user", "a", "u2", "dup", 1, ledger.ErrRequestIDTaken},
		{"request_id of a user whose ID extends the owner's", "a", "u1|x", "dup", 2, ledger.ErrRequestIDTaken},
		{"unknown item", "nope", "u1", "r1", 1, ledger.ErrUnknownItem},
		{"too many", "a", "u1", "r2", 9, ledger.ErrSoldOut},
		{"limit", "limited", "u1", "r3", 4, ledger.ErrLimit},
		{"not started", "early", "u1", "r4", 1, ledger.ErrNotStarted},
		{"ended", "late", "u1", "r5", 1, ledger.ErrEnded},
		{"missing request", "a", "u1", "", 1, ledger.ErrMissingFields},
		{"zero quantity", "a", "u1", "r6", 0, ledger.ErrMissingFields},
		{"negative quantity", "a", "u1", "r6", -1, ledger.ErrInvalid},
		{"huge quantity", "a", "u1", "r6", ledger.MaxQuantity + 1, ledger.ErrInvalid},
		{"colon in item", "a:b", "u1", "r6", 1, ledger.ErrInvalid},
		{"control char", "a", "u\x01", "r6", 1, ledger.ErrInvalid},
		{"bad utf-8", "a", "u1", "r\xff", 1, ledger.ErrInvalid},
	}
	before := dump(t, rdb)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buy(l, tt.item, tt.user, tt.req, tt.qty)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var dup *ledger.DuplicateError
			if errors.As(err, &dup) && dup.OrderID != first.OrderID {
				t.Fatalf("duplicate carries order %s, want %s", dup.OrderID, first.OrderID)
			}
			if errors.Is(err, ledger.ErrRequestIDTaken) && (errors.As(err, &dup) || strings.Contains(err.Error(), first.OrderID)) {
				t.Fatalf("a taken request_id reveals the order: %v", err)
			}
		})
	}
	if after := dump(t, rdb); after != before {
		t.Fatalf("refusals changed Redis:\nbefore %s\nafter  %s", before, after)
	}

	// Within the limit, then over it across two purchases.
	if _, err := buy(l, "limited", "u1", "l1", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(l, "limited", "u1", "l2", 1); !errors.Is(err, ledger.ErrLimit) {
		t.Fatalf("got %v, want ErrLimit", err)
	}
	if _, err := buy(l, "limited", "u2", "l2", 1); err != nil {
		t.Fatalf("another user: %v", err)
	}
}

func TestRequestIDBelongsToItsUser(t *testing.T) {
	ctx := context.Background()
	l, rdb := newLedger(t)
	setStock(t, l, "a", 10)
	first, err := buy(l, "a", "alice", "shared", 1)
	if err != nil {
		t.Fatal(err)
	}
	key := l.Keys().Requests("a")
	v, err := rdb.HGet(ctx, key, "shared").Result()
	if err != nil {
		t.Fatal(err)
	}
	if orderID, user, ok := ledger.RequestOwner(v); !ok || orderID != first.OrderID || user != "alice" {
		t.Fatalf("idempotency value %q: got (%q, %q, %t), want (%q, alice, true)", v, orderID, user, ok, first.OrderID)
	}

	// A user ID holding '|' is stored and compared whole.
	if _, err := buy(l, "a", "b|ob", "piped", 1); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"b", "ob", "b|o"} {
		if _, err := buy(l, "a", user, "piped", 1); !errors.Is(err, ledger.ErrRequestIDTaken) {
			t.Fatalf("user %q reusing b|ob's request_id: got %v, want ErrRequestIDTaken", user, err)
		}
	}
	var dup *ledger.DuplicateError
	if _, err := buy(l, "a", "b|ob", "piped", 1); !errors.As(err, &dup) {
		t.Fatalf("b|ob retrying: got %v, want a duplicate", err)
	}

	// A value written before the owner was stored: nobody gets the order, nothing is sold.
	if err := rdb.HSet(ctx, key, "legacy", first.OrderID).Err(); err != nil {
		t.Fatal(err)
	}
	before := dump(t, rdb)
	for _, user := range []string{"alice", "mallory"} {
		if _, err := buy(l, "a", user, "legacy", 1); !errors.Is(err, ledger.ErrRequestIDTaken) {
			t.Fatalf("%s reusing a legacy request_id: got %v, want ErrRequestIDTaken", user, err)
		}
	}
	if after := dump(t, rdb); after != before {
		t.Fatalf("refusals changed Redis:\nbefore %s\nafter  %s", before, after)
	}
}

func TestRequestOwner(t *testing.T) {
	tests := []struct {
		value, orderID, userID string
		ok                     bool
	}{
		{"2-1795829822810-0|alice", "2-1795829822810-0", "alice", true},
		{"2-1795829822810-0|a|b", "2-1795829822810-0", "a|b", true},
		{"2-1795829822810-0|", "2-1795829822810-0", "", true},
		{"2-1795829822810-0", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		orderID, userID, ok := ledger.RequestOwner(tt.value)
		if orderID != tt.orderID || userID != tt.userID || ok != tt.ok {
			t.Errorf("RequestOwner(%q): got (%q, %q, %t), want (%q, %q, %t)", tt.value, orderID, userID, ok, tt.orderID, tt.userID, tt.ok)
		}
	}
}

func TestRefusedRequestIDIsNotBurned(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t)
	setStock(t, l, "a", 1)
	if _, err := buy(l, "a", "u1", "first", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(l, "a", "u2", "later", 1); !errors.Is(err, ledger.ErrSoldOut) {
		t.Fatalf("got %v, want ErrSoldOut", err)
	}
	if _, err := l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	rc, err := buy(l, "a", "u2", "later", 1)
	if err != nil {
		t.Fatalf("retry after restock: %v", err)
	}
	if rc.Stock != 0 {
		t.Fatalf("got stock %d, want 0", rc.Stock)
	}
}

func TestStockChangesAreEvents(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t)
	if _, err := l.SetStock(ctx, "x", ledger.StockChange{Op: ledger.StockAdd, Quantity: 5}); !errors.Is(err, ledger.ErrUnknownItem) {
		t.Fatalf("add to unknown item: got %v, want ErrUnknownItem", err)
	}
	if n, err := l.SetStock(ctx, "x", ledger.StockChange{Op: ledger.StockInit, Quantity: 5}); err != nil || n != 5 {
		t.Fatalf("init: got %d, %v; want 5", n, err)
	}
	if n, err := l.SetStock(ctx, "x", ledger.StockChange{Op: ledger.StockInit, Quantity: 9}); !errors.Is(err, ledger.ErrItemExists) || n != 5 {
		t.Fatalf("init again: got %d, %v; want 5, ErrItemExists", n, err)
	}
	if _, err := l.SetStock(ctx, "x", ledger.StockChange{Op: ledger.StockAdd, Quantity: -6}); !errors.Is(err, ledger.ErrNegativeStock) {
		t.Fatalf("got %v, want ErrNegativeStock", err)
	}
	if n, err := l.SetStock(ctx, "x", ledger.StockChange{Op: ledger.StockAdd, Quantity: 7}); err != nil || n != 12 {
		t.Fatalf("add: got %d, %v; want 12", n, err)
	}
	if _, err := buy(l, "x", "u", "r", 2); err != nil {
		t.Fatal(err)
	}
	// Folding the events gives the counter.
	var fold int64
	for _, e := range testenv.Events(t, l) {
		switch {
		case e.Type == ledger.EventStock && e.Op == ledger.StockSet:
			fold = e.Quantity
		case e.Type == ledger.EventStock:
			fold += e.Quantity
		case e.Type == ledger.EventOrder:
			fold -= e.Quantity
		}
	}
	it, err := l.Item(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if fold != it.Stock || it.Stock != 10 {
		t.Fatalf("got fold %d and counter %d, want 10 and 10", fold, it.Stock)
	}
}

func TestScriptFlushFallsBackToEval(t *testing.T) {
	ctx := context.Background()
	l, rdb := newLedger(t)
	setStock(t, l, "a", 10)
	if _, err := buy(l, "a", "u", "r1", 1); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(l, "a", "u", "r2", 1); err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v", err)
	}
}

func TestRedisDownIsUnavailable(t *testing.T) {
	srv, rdb := testenv.StartRedis(t)
	l, err := ledger.Open(context.Background(), rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	setStock(t, l, "a", 5)
	srv.Kill()
	if _, err := buy(l, "a", "u", "r1", 1); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	rc, err := buy(l, "a", "u", "r1", 1)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if rc.Stock != 4 {
		t.Fatalf("got stock %d after restart from AOF, want 4", rc.Stock)
	}
}

func TestOpenKeepsPartitionCount(t *testing.T) {
	ctx := context.Background()
	_, rdb := testenv.StartRedis(t)
	if _, err := ledger.Open(ctx, rdb, ledger.Config{Prefix: "t", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, rdb, ledger.Config{Prefix: "t", Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Keys().Partitions(); got != 3 {
		t.Fatalf("got %d partitions, want 3", got)
	}
}

func TestOrderLookup(t *testing.T) {
	l, _ := newLedger(t)
	setStock(t, l, "a", 5)
	rc, err := buy(l, "a", "u", "r1", 2)
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.Order(context.Background(), rc.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	if e.OrderID != rc.OrderID || e.RequestID != "r1" || e.Quantity != 2 {
		t.Fatalf("got %+v", e)
	}
	p, sid, _ := strings.Cut(rc.OrderID, "-")
	ms, seq, _ := strings.Cut(sid, "-")
	tests := []struct {
		id   string
		want error
	}{
		{"0-1-0", ledger.ErrUnknownOrder},
		{"99-1-0", ledger.ErrUnknownOrder},
		{"18446744073709551615-1-0", ledger.ErrUnknownOrder},
		{p + "-18446744073709551615-18446744073709551615", ledger.ErrUnknownOrder},
		{"", ledger.ErrInvalid},
		{"x", ledger.ErrInvalid},
		{"1-2", ledger.ErrInvalid},
		{"a-1-0", ledger.ErrInvalid},
		{"1-1-x", ledger.ErrInvalid},
		{"-1-1-0", ledger.ErrInvalid},
		{"1-1-0-0", ledger.ErrInvalid},
		// Other spellings of the order just placed, which Redis would read as its stream ID.
		{"0" + rc.OrderID, ledger.ErrInvalid},
		{"+" + rc.OrderID, ledger.ErrInvalid},
		{p + "-0" + sid, ledger.ErrInvalid},
		{p + "-" + ms + "-0" + seq, ledger.ErrInvalid},
		{p + "-+" + sid, ledger.ErrInvalid},
		{p + "-" + ms + "-+" + seq, ledger.ErrInvalid},
		{p + "-" + ms, ledger.ErrInvalid},
		{" " + rc.OrderID, ledger.ErrInvalid},
		{rc.OrderID + " ", ledger.ErrInvalid},
		// Beyond 64 bits: Redis refuses these, which must not become an internal error.
		{p + "-99999999999999999999-0", ledger.ErrInvalid},
		{p + "-18446744073709551616-0", ledger.ErrInvalid},
		{p + "-" + ms + "-18446744073709551616", ledger.ErrInvalid},
		{"18446744073709551616-1-0", ledger.ErrInvalid},
	}
	for _, tt := range tests {
		if _, err := l.Order(context.Background(), tt.id); !errors.Is(err, tt.want) {
			t.Errorf("order %q: got %v, want %v", tt.id, err, tt.want)
		}
	}
}

// dump renders every key and value in Redis, to check that something changed nothing.
func dump(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	slices.Sort(keys)
	for _, k := range keys {
		v, err := rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf("%s=%x;", k, v)
	}
	return out
}

// evalCalls counts the purchase script runs Redis has served.
func evalCalls(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
			fmt.Sscanf(rest, "%d", &n)
		}
	}
	return n
}

func TestSoldOutSkipsTheScript(t *testing.T) {
	tests := []struct {
		name string
		cfg  ledger.Config
	}{
		{"one call per round trip", ledger.Config{}},
		{"pipelined", ledger.Config{Pipeline: 8, Senders: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testSoldOutSkipsTheScript(t, tt.cfg) })
	}
}

func testSoldOutSkipsTheScript(t *testing.T, cfg ledger.Config) {
	ctx := context.Background()
	_, rdb := testenv.StartRedis(t)
	l, err := ledger.Open(ctx, rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	other, err := ledger.Open(ctx, rdb, ledger.Config{}) // another process
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.TailWinners(wctx, nil) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	setStock(t, l, "a", 1)
	first, err := buy(l, "a", "u1", "r1", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Sold out as of a position the tail reaches within one read.
	waitUntil(t, func() bool {
		before := l.WinnerStats().SoldOutLocal
		if _, err := buy(l, "a", "u2", "r2", 1); !errors.Is(err, ledger.ErrSoldOut) {
			t.Fatalf("got %v, want ErrSoldOut", err)
		}
		return l.WinnerStats().SoldOutLocal > before
	})
	before := evalCalls(t, rdb)
	for i := range 20 {
		if _, err := buy(l, "a", "u3", fmt.Sprintf("x%d", i), 1); !errors.Is(err, ledger.ErrSoldOut) {
			t.Fatalf("got %v, want ErrSoldOut", err)
		}
	}
	// A retry of the order that won still gets it back; its request_id reused by another user
	// does not.
	var dup *ledger.DuplicateError
	if _, err := buy(l, "a", "u1", "r1", 1); !errors.As(err, &dup) || dup.OrderID != first.OrderID {
		t.Fatalf("retry of the winner: got %v, want duplicate of %s", err, first.OrderID)
	}
	if _, err := buy(l, "a", "u3", "r1", 1); !errors.Is(err, ledger.ErrRequestIDTaken) || errors.As(err, &dup) {
		t.Fatalf("another user reusing the winner's request_id: got %v, want ErrRequestIDTaken", err)
	}
	if got := evalCalls(t, rdb) - before; got != 0 {
		t.Fatalf("the script ran %d times for a known sold-out item, want 0", got)
	}
	// Stock added by another process: once SetStock has returned (after the reopening), the
	// unit is sold at the first try.
	if _, err := other.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(l, "a", "u2", "r2", 1); err != nil {
		t.Fatalf("after the stock add returned: got %v, want success", err)
	}
}

func TestPipelinedPurchasesNeverOversell(t *testing.T) {
	ctx := context.Background()
	_, rdb := testenv.StartRedis(t)
	l, err := ledger.Open(ctx, rdb, ledger.Config{Pipeline: 16, Senders: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	const stock, buyers = 60, 500
	setStock(t, l, "hot", stock)
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[string]bool{}
	for i := range buyers {
		wg.Go(func() {
			if i == buyers/2 {
				rdb.ScriptFlush(ctx) // calls in flight meet NOSCRIPT and are sent again
			}
			rc, err := buy(l, "hot", fmt.Sprintf("u%d", i), fmt.Sprintf("r%d", i), 1)
			switch {
			case err == nil:
				mu.Lock()
				won[rc.OrderID] = true
				mu.Unlock()
			case !errors.Is(err, ledger.ErrSoldOut):
				t.Errorf("purchase %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	orders := 0
	for _, e := range testenv.Events(t, l) {
		if e.Type == ledger.EventOrder {
			orders++
			if !won[e.OrderID] {
				t.Errorf("order %s in the ledger was not acknowledged", e.OrderID)
			}
		}
	}
	if len(won) != stock || orders != stock {
		t.Fatalf("got %d acknowledged and %d in the ledger, want %d", len(won), orders, stock)
	}
	// A duplicate through the pipeline still returns its order.
	var dup *ledger.DuplicateError
	for id := range won {
		e, err := l.Order(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := buy(l, "hot", e.UserID, e.RequestID, 1); !errors.As(err, &dup) || dup.OrderID != id {
			t.Fatalf("duplicate: got %v, want order %s", err, id)
		}
		break
	}
	setStock(t, l, "fresh", 5)
	l.Close()
	if _, err := buy(l, "fresh", "late", "late", 1); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("purchase after Close: got %v, want ErrUnavailable", err)
	}
}
