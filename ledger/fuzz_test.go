package ledger_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
)

// FuzzDecodeEntry feeds stream entries built from "k=v;k=v" strings to the decoder: it never
// panics, every error matches ErrMalformed (with one event, marked), and what it accepts is
// complete events.
func FuzzDecodeEntry(f *testing.F) {
	f.Add("v=1;type=order;request_id=r;user_id=u;item_id=a;quantity=1;ts=1795829822810", "1795829822810-0")
	f.Add("v=1;type=restock;order_id=0-1-0;item_id=a;user_id=u;request_id=r;quantity=2;reason=x;ts=5", "9-1")
	f.Add("v=1;type=stock;item_id=a;op=set;quantity=5;stock=5;limit=0;start_ms=0;end_ms=0", "3-0")
	f.Add("v=2;type=order", "1-0")
	f.Add("junk=1", "1-1")
	f.Add("v=1;type=stock;item_id=a;op=mul;quantity=x", "1-2")
	f.Add("v=1;type=orders;ts=5;orders=a\x1fu\x1fr\x1f1\x1eb\x1fv\x1fs\x1f2\x1f9", "5-4")
	f.Add("v=1;type=orders;ts=5;orders=a\x1fu\x1fr\x1f1\x1eb\x1fv\x1fs\x1f2", "5-0")
	f.Fuzz(func(t *testing.T, fields, id string) {
		values := map[string]any{}
		for kv := range strings.SplitSeq(fields, ";") {
			k, v, _ := strings.Cut(kv, "=")
			values[k] = v
		}
		events, err := ledger.DecodeEntry(1, redis.XMessage{ID: id, Values: values})
		if err != nil {
			if !errors.Is(err, ledger.ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			if len(events) != 1 || events[0].Malformed != err || events[0].StreamID != id {
				t.Fatalf("malformed entry decoded to %+v", events)
			}
			return
		}
		for _, e := range events {
			checkDecoded(t, e, id, len(events))
		}
	})
}

// checkDecoded fails t unless e, one of n events decoded from entry id, is complete.
func checkDecoded(t *testing.T, e ledger.Event, id string, n int) {
	t.Helper()
	if e.ItemID == "" || e.Partition != 1 || e.StreamID != id || e.Malformed != nil {
		t.Fatalf("accepted an incomplete event %+v", e)
	}
	if n > 1 && e.Type != ledger.EventOrder {
		t.Fatalf("entry %s decoded to %d events, one of type %q", id, n, e.Type)
	}
	switch e.Type {
	case ledger.EventOrder:
		_, sid, err := ledger.ParseOrderID(e.OrderID)
		// An `order` entry's order has the entry's ID; one of an `orders` entry its own, at or
		// before the entry's.
		own := e.OrderID == ledger.OrderID(1, id) || err == nil && ledger.CompareIDs(sid, id) <= 0
		if !own || e.RequestID == "" || e.UserID == "" || e.Quantity < 1 {
			t.Fatalf("accepted an incomplete order %+v", e)
		}
	case ledger.EventRestock:
		if e.OrderID == "" || e.Quantity < 1 {
			t.Fatalf("accepted an incomplete restock %+v", e)
		}
	case ledger.EventStock:
		if e.Op != ledger.StockSet && e.Op != ledger.StockAdd {
			t.Fatalf("accepted stock op %q", e.Op)
		}
	default:
		t.Fatalf("accepted type %q", e.Type)
	}
}

// FuzzParseOrderID checks that an order has one ID: whatever ParseOrderID accepts is exactly
// what OrderID writes for the parts it returns.
func FuzzParseOrderID(f *testing.F) {
	for _, id := range []string{"2-1795894969675-0", "2-01795894969675-0", "+2-1-0", "02-1-0", "2-1-00", "2-99999999999999999999-0", "0-0-0"} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		p, sid, err := ledger.ParseOrderID(id)
		if err != nil {
			if !errors.Is(err, ledger.ErrInvalid) && !errors.Is(err, ledger.ErrUnknownOrder) {
				t.Fatalf("ParseOrderID(%q): error %v matches neither ErrInvalid nor ErrUnknownOrder", id, err)
			}
			return
		}
		if got := ledger.OrderID(p, sid); got != id {
			t.Fatalf("ParseOrderID(%q) = %d, %q, which OrderID writes as %q", id, p, sid, got)
		}
	})
}
