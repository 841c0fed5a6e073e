package projector_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// entryOrder is one order of a hand-written `orders` entry (payBy 0: none).
type entryOrder struct {
	item, user, req string
	qty, payBy      int64
}

// addOrders appends to partition p an `orders` entry holding orders, as the purchase script
// would (the stock counters lose the units too), at an ID ahead of the clock; it returns the
// entry's ID and the orders' IDs.
func (e env) addOrders(t *testing.T, p int, orders ...entryOrder) (string, []string) {
	t.Helper()
	ctx := context.Background()
	k := e.l.Keys()
	ms, first := time.Now().UnixMilli()+60_000, 3
	var records, ids []string
	for i, o := range orders {
		v := fmt.Sprintf("%s\x1f%s\x1f%s\x1f%d", o.item, o.user, o.req, o.qty)
		if o.payBy != 0 {
			v += fmt.Sprintf("\x1f%d", o.payBy)
		}
		records = append(records, v)
		ids = append(ids, fmt.Sprintf("%d-%d-%d", p, ms, first+i))
		if err := e.rdb.DecrBy(ctx, k.Stock(o.item), o.qty).Err(); err != nil {
			t.Fatal(err)
		}
	}
	id := fmt.Sprintf("%d-%d", ms, first+len(orders)-1)
	values := []string{"v", "1", "type", "orders", "ts", strconv.FormatInt(ms, 10), "orders", strings.Join(records, "\x1e")}
	if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: k.Events(p), ID: id, Values: values}).Err(); err != nil {
		t.Fatal(err)
	}
	return id, ids
}

// ackCounter counts, per stream ID, the times XACK named it (count is a testenv.Hook).
type ackCounter struct {
	mu  sync.Mutex
	ids map[string]int
}

func (c *ackCounter) count(cmd redis.Cmder) {
	if cmd.Name() != "xack" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range cmd.Args()[3:] {
		c.ids[fmt.Sprint(a)]++
	}
}

func (c *ackCounter) acks(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[id]
}

// ordersEnv is a projector test's set-up for `orders` entries: items a and b of one partition
// with 10 units each, and a count of the acknowledgements of each entry.
func ordersEnv(t *testing.T) (e env, b string, acks *ackCounter) {
	e = newEnv(t)
	b = testenv.SamePartition(e.l.Keys(), "a")
	e.setStock(t, "a", 10)
	e.setStock(t, b, 10)
	acks = &ackCounter{ids: map[string]int{}}
	e.rdb.AddHook(testenv.Hook(acks.count))
	return e, b, acks
}

func TestProjectsOrdersEntry(t *testing.T) {
	ctx := context.Background()
	e, b, acks := ordersEnv(t)
	k := e.l.Keys()
	payBy := time.Now().Add(time.Hour).UnixMilli()
	id, ids := e.addOrders(t, k.Partition("a"),
		entryOrder{"a", "u1", "r1", 1, 0}, entryOrder{"a", "u2", "r2", 2, 0}, entryOrder{b, "u3", "r3", 1, payBy})
	e.start(t, projector.Config{})
	e.waitSettled(t)

	got := e.statuses(t)
	want := map[string]string{ids[0]: ledger.StatusConfirmed, ids[1]: ledger.StatusConfirmed, ids[2]: ledger.StatusReserved}
	if len(got) != len(want) {
		t.Fatalf("MySQL holds %v, want %v", got, want)
	}
	for oid, status := range want {
		if got[oid] != status {
			t.Errorf("order %s: got %q, want %q", oid, got[oid], status)
		}
	}
	if n := acks.acks(id); n != 1 {
		t.Errorf("entry %s acknowledged %d times, want once", id, n)
	}
	rep, err := projector.Audit(ctx, e.l, projector.NewStore(e.db), projector.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() {
		t.Fatalf("audit: %+v", rep)
	}
}

// One order of an `orders` entry fails for good (its request_id holds another order in
// MySQL): it is restocked, the others are projected, and the entry is acknowledged once,
// after both.
func TestOrdersEntryWithARestock(t *testing.T) {
	ctx := context.Background()
	e, b, acks := ordersEnv(t)
	k := e.l.Keys()
	if _, err := e.db.Exec(`INSERT INTO orders (order_id, request_id, user_id, item_id, quantity, status, created_at, updated_at)
		VALUES ('0-1-0', 'r1', 'u0', 'a', 1, 'confirmed', NOW(), NOW())`); err != nil {
		t.Fatal(err)
	}
	id, ids := e.addOrders(t, k.Partition("a"),
		entryOrder{"a", "u1", "r2", 2, 0}, entryOrder{"a", "u1", "r1", 3, 0}, entryOrder{b, "u2", "r3", 1, 0})
	e.start(t, projector.Config{})
	e.waitSettled(t)

	got := e.statuses(t)
	want := map[string]string{"0-1-0": ledger.StatusConfirmed, ids[0]: ledger.StatusConfirmed, ids[1]: ledger.StatusCancelled, ids[2]: ledger.StatusConfirmed}
	for oid, status := range want {
		if got[oid] != status {
			t.Errorf("order %s: got %q, want %q", oid, got[oid], status)
		}
	}
	if s := e.stock(t, "a"); s != 8 {
		t.Errorf("stock of a: got %d, want 8 (10 - 2 - 3 + 3 restocked)", s)
	}
	if s := e.stock(t, b); s != 9 {
		t.Errorf("stock of %s: got %d, want 9", b, s)
	}
	if n := acks.acks(id); n != 1 {
		t.Errorf("entry %s acknowledged %d times, want once", id, n)
	}
	restocks := 0
	for _, ev := range testenv.Events(t, e.l) {
		if ev.Type == ledger.EventRestock {
			restocks++
			if ev.OrderID != ids[1] || !strings.Contains(ev.Reason, "request_id") {
				t.Errorf("restock event %+v, want one of %s", ev, ids[1])
			}
		}
	}
	if restocks != 1 {
		t.Errorf("got %d restock events, want 1", restocks)
	}
	rep, err := projector.Audit(ctx, e.l, projector.NewStore(e.db), projector.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Violations {
		// The row put in by hand is the one thing the ledger does not know.
		if v.OrderID != "0-1-0" {
			t.Errorf("audit violation: %+v", v)
		}
	}
}
