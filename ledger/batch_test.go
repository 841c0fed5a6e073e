package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/lua"
	"github.com/flashsale/flashsale/tests/testenv"
)

// TestPurchaseBatchDecidesAsOneByOne runs one sequence of purchases twice on one Redis, under
// two prefixes set up alike: through purchase.lua one call per purchase, and in calls of 1 to 7
// purchases. Every reply (code, stock, which earlier purchase a duplicate names) and the stock
// left must be the same, a purchase that fails with an error must fail alone, and each call
// that placed orders must have added one ledger entry.
func TestPurchaseBatchDecidesAsOneByOne(t *testing.T) {
	ctx := context.Background()
	_, rdb := testenv.StartRedis(t)
	script := redis.NewScript(lua.Purchase)
	limit, later := int64(3), time.Now().Add(time.Hour)
	open := func(prefix string) *ledger.Ledger {
		l, err := ledger.Open(ctx, rdb, ledger.Config{Prefix: prefix, Partitions: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			item string
			ch   ledger.StockChange
		}{
			{"plain", ledger.StockChange{Op: ledger.StockSet, Quantity: 12}},
			{"limited", ledger.StockChange{Op: ledger.StockSet, Quantity: 100, Limit: &limit}},
			{"later", ledger.StockChange{Op: ledger.StockSet, Quantity: 5, Start: &later}},
			{"broken", ledger.StockChange{Op: ledger.StockSet, Quantity: 10}},
		} {
			if _, err := l.SetStock(ctx, c.item, c.ch); err != nil {
				t.Fatal(err)
			}
		}
		// Per-user counts of the wrong type: the purchases of that item fail, and only they.
		keys, _ := ledger.PurchaseCall(l, ledger.PurchaseRequest{RequestID: "x", UserID: "u", ItemID: "broken", Quantity: 1})
		rdb.Set(ctx, keys[5], "v", 0)
		return l
	}
	single, batched := open("one"), open("many")

	var reqs []ledger.PurchaseRequest
	items := []string{"plain", "limited", "later", "nosuch"}
	for i := range 90 {
		reqs = append(reqs, ledger.PurchaseRequest{
			RequestID: fmt.Sprintf("r%d", i%37), // every request_id comes back, some for other users
			UserID:    fmt.Sprintf("u%d", i%5),
			ItemID:    items[i%len(items)],
			Quantity:  int64(1 + i%3),
		})
	}
	reqs = slices.Insert(reqs, 10, ledger.PurchaseRequest{RequestID: "x", UserID: "u1", ItemID: "broken", Quantity: 1})

	type outcome struct {
		code, stock int64
		dupOf       int // for a duplicate: the index of the purchase whose order it names
		err         bool
	}
	decode := func(v any, err error, orders map[string]int) outcome {
		if err != nil {
			return outcome{err: true}
		}
		a := v.([]any)
		o := outcome{code: a[0].(int64), stock: a[2].(int64), dupOf: -1}
		if o.code == 2 {
			id, ok := orders[a[1].(string)]
			if !ok {
				t.Fatalf("duplicate names unknown order %v", a[1])
			}
			o.dupOf = id
		}
		return o
	}
	record := func(o outcome, v any, i int, orders map[string]int) {
		if !o.err && o.code == 0 {
			orders[v.([]any)[1].(string)] = i
		}
	}

	var want []outcome
	orders := map[string]int{}
	for i, r := range reqs {
		keys, args := ledger.PurchaseCall(single, r)
		v, err := script.Run(ctx, rdb, keys, args...).Result()
		if err == nil {
			var replies []any
			if replies, err = ledger.CallReplies(v, 1); err != nil {
				t.Fatal(err)
			}
			v = replies[0]
			if e, ok := v.(redis.Error); ok {
				err = e
			}
		}
		o := decode(v, err, orders)
		record(o, v, i, orders)
		want = append(want, o)
	}

	var got []outcome
	orders = map[string]int{}
	placingCalls := 0
	for start, size := 0, 1; start < len(reqs); start, size = start+size, size%7+1 {
		end := min(start+size, len(reqs))
		keys, args := ledger.JoinedCall(batched, reqs[start:end])
		v, err := script.Run(ctx, rdb, keys, args...).Result()
		if err != nil {
			t.Fatalf("batch %d..%d: %v", start, end, err)
		}
		replies, err := ledger.CallReplies(v, end-start)
		if err != nil {
			t.Fatalf("batch %d..%d: %v", start, end, err)
		}
		placed := false
		for j, rep := range replies {
			var rerr error
			if e, ok := rep.(redis.Error); ok {
				rerr = e
			}
			o := decode(rep, rerr, orders)
			record(o, rep, start+j, orders)
			got = append(got, o)
			placed = placed || (!o.err && o.code == 0)
		}
		if placed {
			placingCalls++
		}
	}
	if n := rdb.XLen(ctx, "many:{p0}:events").Val() - rdb.XLen(ctx, "one:{p0}:events").Val() + int64(len(orders)); n != int64(placingCalls) {
		t.Errorf("%d order entries from %d calls that placed orders", n, placingCalls)
	}

	for i := range reqs {
		if got[i] != want[i] {
			t.Errorf("purchase %d %+v: batched %+v, one by one %+v", i, reqs[i], got[i], want[i])
		}
	}
	if !want[10].err {
		t.Fatalf("the purchase on a broken key did not fail: %+v", want[10])
	}
	for _, item := range items[:3] {
		a, err1 := single.Item(ctx, item)
		b, err2 := batched.Item(ctx, item)
		if err1 != nil || err2 != nil || a.Stock != b.Stock {
			t.Errorf("%s: stock %d (%v) one by one, %d (%v) batched", item, a.Stock, err1, b.Stock, err2)
		}
	}
}

func TestBatchGroupsByPartition(t *testing.T) {
	p := func(part, item string) []string {
		return []string{"fs:{" + part + "}:stock:" + item, "fs:{" + part + "}:rules:" + item, "fs:{" + part + "}:events"}
	}
	got := ledger.BatchGroups([][]string{p("p1", "a"), p("p2", "b"), nil, p("p1", "c"), nil, p("p1", "a"), p("p2", "b")})
	want := [][]int{{0, 3, 5}, {1, 6}, {2}, {4}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestPipelinedPurchasesKeepRules sends concurrent purchases that land in the same batches:
// one request_id sent many times places one order, and one user's purchases stop at the limit.
func TestPipelinedPurchasesKeepRules(t *testing.T) {
	ctx := context.Background()
	_, rdb := testenv.StartRedis(t)
	l, err := ledger.Open(ctx, rdb, ledger.Config{Pipeline: 16, Senders: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	limit := int64(3)
	if _, err := l.SetStock(ctx, "lim", ledger.StockChange{Op: ledger.StockSet, Quantity: 1000, Limit: &limit}); err != nil {
		t.Fatal(err)
	}
	setStock(t, l, "dup", 1000)
	const n = 64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var limited, limitOK, dupOK int
	dupOrders := map[string]bool{}
	for i := range n {
		wg.Go(func() {
			_, lerr := buy(l, "lim", "greedy", fmt.Sprintf("g%d", i), 1)
			rc, derr := buy(l, "dup", "same", "one-request", 1)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case lerr == nil:
				limitOK++
			case errors.Is(lerr, ledger.ErrLimit):
				limited++
			default:
				t.Errorf("limited purchase %d: %v", i, lerr)
			}
			var dup *ledger.DuplicateError
			switch {
			case derr == nil:
				dupOK++
				dupOrders[rc.OrderID] = true
			case errors.As(derr, &dup):
				dupOrders[dup.OrderID] = true
			default:
				t.Errorf("repeated purchase %d: %v", i, derr)
			}
		})
	}
	wg.Wait()
	if limitOK != int(limit) || limited != n-int(limit) {
		t.Errorf("limit %d: %d bought and %d refused, want %d and %d", limit, limitOK, limited, limit, n-int(limit))
	}
	if dupOK != 1 || len(dupOrders) != 1 {
		t.Errorf("one request_id sent %d times: %d orders placed, %d order IDs answered; want 1 and 1", n, dupOK, len(dupOrders))
	}
	for item, want := range map[string]int64{"lim": 1000 - limit, "dup": 999} {
		it, err := l.Item(ctx, item)
		if err != nil || it.Stock != want {
			t.Errorf("%s: stock %d (%v), want %d", item, it.Stock, err, want)
		}
	}
}
