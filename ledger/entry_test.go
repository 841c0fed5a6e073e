package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// order is one order of a hand-written `orders` entry: item, user, request, quantity and,
// when not 0, pay_by.
type order struct {
	item, user, req string
	qty, payBy      int64
}

// ordersValues returns the fields of an `orders` entry at time ts holding orders.
func ordersValues(ts int64, orders ...order) map[string]any {
	records := make([]string, len(orders))
	for i, o := range orders {
		parts := []string{o.item, o.user, o.req, strconv.FormatInt(o.qty, 10)}
		if o.payBy != 0 {
			parts = append(parts, strconv.FormatInt(o.payBy, 10))
		}
		records[i] = strings.Join(parts, "\x1f")
	}
	return map[string]any{"v": "1", "type": "orders", "ts": strconv.FormatInt(ts, 10), "orders": strings.Join(records, "\x1e")}
}

func TestDecodeOrdersEntry(t *testing.T) {
	values := ordersValues(1700000000000,
		order{"itemA", "u1", "r1", 1, 0}, order{"itemA", "u2", "r2", 2, 0}, order{"itemB", "u3", "r3", 1, 1700000600000})
	events, err := ledger.DecodeEntry(3, redis.XMessage{ID: "1700000000000-7", Values: values})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := []ledger.Event{
		{Partition: 3, StreamID: "1700000000000-7", Type: ledger.EventOrder, OrderID: "3-1700000000000-5", ItemID: "itemA", UserID: "u1", RequestID: "r1", Quantity: 1},
		{Partition: 3, StreamID: "1700000000000-7", Type: ledger.EventOrder, OrderID: "3-1700000000000-6", ItemID: "itemA", UserID: "u2", RequestID: "r2", Quantity: 2},
		{Partition: 3, StreamID: "1700000000000-7", Type: ledger.EventOrder, OrderID: "3-1700000000000-7", ItemID: "itemB", UserID: "u3", RequestID: "r3", Quantity: 1, PayBy: time.UnixMilli(1700000600000)},
	}
	if len(events) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(events), len(want), events)
	}
	for i, w := range want {
		w.Time = time.UnixMilli(1700000000000)
		if got := events[i]; !reflect.DeepEqual(got, w) {
			t.Errorf("event %d: got %+v, want %+v", i, got, w)
		}
	}
	// Order IDs of an `orders` entry keep the one spelling ParseOrderID accepts.
	for _, e := range events {
		if p, sid, err := ledger.ParseOrderID(e.OrderID); err != nil || ledger.OrderID(p, sid) != e.OrderID {
			t.Errorf("order ID %s does not parse back: %d %s %v", e.OrderID, p, sid, err)
		}
	}
	// An entry of one order, at sequence 0, with no pay_by.
	one, err := ledger.DecodeEntry(0, redis.XMessage{ID: "9-0", Values: ordersValues(9, order{"a", "u", "r", 100, 0})})
	if err != nil || len(one) != 1 || one[0].OrderID != "0-9-0" || one[0].Quantity != 100 || !one[0].PayBy.IsZero() {
		t.Fatalf("one order: got %+v, %v", one, err)
	}
}

func TestDecodeOrdersEntryMalformed(t *testing.T) {
	good := func() map[string]any {
		return ordersValues(5, order{"a", "u", "r", 1, 0}, order{"a", "v", "s", 2, 9})
	}
	with := func(k, v string) map[string]any {
		m := good()
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	list := func(records ...string) map[string]any { return with("orders", strings.Join(records, "\x1e")) }
	tests := []struct {
		name   string
		id     string
		values map[string]any
		item   string // the malformed event's ItemID
	}{
		{"more orders than sequence numbers up to the entry's", "5-0", good(), "a"},
		{"entry ID that does not parse", "5", good(), "a"},
		{"no orders field", "5-4", with("orders", ""), ""},
		{"another field", "5-4", with("item_id", "a"), "a"},
		{"version 2", "5-4", with("v", "2"), "a"},
		{"no ts", "5-4", with("ts", ""), "a"},
		{"ts not a number", "5-4", with("ts", "x"), "a"},
		{"an empty order", "5-4", list("a\x1fu\x1fr\x1f1", ""), ""},
		{"three parts", "5-4", list("a\x1fu\x1fr\x1f1", "a\x1fu\x1fr"), "a"},
		{"six parts", "5-4", list("a\x1fu\x1fr\x1f1", "a\x1fu\x1fr\x1f1\x1f9\x1f9"), "a"},
		{"invalid item", "5-4", list("a\x1fu\x1fr\x1f1", "a b\x1fu\x1fr\x1f1"), ""},
		{"empty user", "5-4", list("a\x1fu\x1fr\x1f1", "a\x1f\x1fr\x1f1"), "a"},
		{"empty request", "5-4", list("a\x1fu\x1fr\x1f1", "a\x1fu\x1f\x1f1"), "a"},
		{"quantity 0", "5-4", list("a\x1fu\x1fr\x1f1", "a\x1fu\x1fr\x1f0"), "a"},
		{"quantity over the maximum", "5-4", list("a\x1fu\x1fr\x1f1", fmt.Sprintf("a\x1fu\x1fr\x1f%d", ledger.MaxQuantity+1)), "a"},
		{"pay_by 0", "5-4", list("a\x1fu\x1fr\x1f1", "a\x1fu\x1fr\x1f1\x1f0"), "a"},
		{"pay_by not a number", "5-4", list("a\x1fu\x1fr\x1f1", "a\x1fu\x1fr\x1f1\x1fsoon"), "a"},
		{"orders of two items", "5-4", list("a\x1fu\x1fr\x1f1", "b\x1fu\x1fr\x1f0"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := ledger.DecodeEntry(2, redis.XMessage{ID: tt.id, Values: tt.values})
			if !errors.Is(err, ledger.ErrMalformed) {
				t.Fatalf("got error %v, want ErrMalformed", err)
			}
			if len(events) != 1 {
				t.Fatalf("got %d events, want one malformed: %+v", len(events), events)
			}
			e := events[0]
			if e.Malformed != err || e.Partition != 2 || e.StreamID != tt.id || e.Type != ledger.EventOrders || e.ItemID != tt.item || e.OrderID != "" {
				t.Fatalf("got %+v, want the malformed entry %s with item %q", e, tt.id, tt.item)
			}
		})
	}
	// The entry is valid as it is.
	if _, err := ledger.DecodeEntry(2, redis.XMessage{ID: "5-4", Values: good()}); err != nil {
		t.Fatalf("good entry: %v", err)
	}
}

// An `orders` entry is read as its orders by every reader: Order finds each, Range and the
// consumer group return them all (COUNT counts the entry once), the pending report lists each,
// a restock leaves the entry pending, and the winner index answers a winner's retry with its
// own order ID.
func TestOrdersEntryReaders(t *testing.T) {
	ctx := context.Background()
	srv, rdb := testenv.StartRedis(t)
	pr := startProcess(t, srv.Addr, ledger.Config{}, true)
	l, k := pr.l, pr.l.Keys()
	b := testenv.SamePartition(k, "a")
	p := k.Partition("a")
	// An ID ahead of the clock: every later entry goes after it.
	ms := time.Now().UnixMilli() + 60_000
	id := fmt.Sprintf("%d-7", ms)
	values := ordersValues(time.Now().UnixMilli(),
		order{"a", "v1", "r1", 1, 0}, order{"a", "v2", "r2", 1, 0}, order{b, "u3", "r3", 2, ms + 600_000})
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: k.Events(p), ID: id, Values: values}).Err(); err != nil {
		t.Fatal(err)
	}
	ids := []string{fmt.Sprintf("%d-%d-5", p, ms), fmt.Sprintf("%d-%d-6", p, ms), fmt.Sprintf("%d-%d-7", p, ms)}

	for i, oid := range ids {
		e, err := l.Order(ctx, oid)
		if err != nil || e.OrderID != oid || e.StreamID != id || e.RequestID != fmt.Sprintf("r%d", i+1) {
			t.Fatalf("Order(%s): got %+v, %v", oid, e, err)
		}
	}
	for _, oid := range []string{fmt.Sprintf("%d-%d-4", p, ms), fmt.Sprintf("%d-%d-8", p, ms), fmt.Sprintf("%d-%d-6", p, ms-1)} {
		if e, err := l.Order(ctx, oid); !errors.Is(err, ledger.ErrUnknownOrder) {
			t.Fatalf("Order(%s) of no order: got %+v, %v, want ErrUnknownOrder", oid, e, err)
		}
	}

	checkOrders := func(what string, events []ledger.Event) {
		t.Helper()
		if len(events) != len(ids) {
			t.Fatalf("%s: got %d events, want %d: %+v", what, len(events), len(ids), events)
		}
		for i, e := range events {
			if e.Malformed != nil || e.Type != ledger.EventOrder || e.StreamID != id || e.OrderID != ids[i] {
				t.Fatalf("%s: event %d is %+v, want order %s of entry %s", what, i, e, ids[i], id)
			}
		}
	}
	events, err := l.Range(ctx, p, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	checkOrders("Range of one entry", events)
	fields := map[string]string{}
	for f, v := range values {
		fields[f] = v.(string)
	}
	checkOrders("DecodeEntry", l.DecodeEntry(p, id, fields))
	if err := l.EnsureGroup(ctx, p, "g"); err != nil {
		t.Fatal(err)
	}
	events, err = l.ReadGroup(ctx, p, "g", "c", ">", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkOrders("ReadGroup of one entry", events)

	// A restock does not acknowledge: the entry's other orders are not settled yet.
	if done, err := l.Restock(ctx, events[2], "test"); err != nil || !done {
		t.Fatalf("restock: %v, %v", done, err)
	}
	rep, err := l.Pending(ctx, "g", ledger.PendingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Entries) != len(ids) || rep.Partitions[0].Count != 1 {
		t.Fatalf("pending report: got %+v, want one pending entry listed once per order", rep)
	}
	for i, pe := range rep.Entries {
		if pe.StreamID != id || pe.OrderID != ids[i] || pe.Type != string(ledger.EventOrder) {
			t.Fatalf("pending line %d: got %+v, want order %s of entry %s", i, pe, ids[i], id)
		}
	}

	// The winner index answers a retry with the order's own ID, not its entry's.
	orders := sellOut(t, pr, "a", 2)
	orders["r1"], orders["r2"] = ids[0], ids[1]
	waitLocal(t, pr, "a")
	answeredLocally(t, pr, "a", orders)
}
