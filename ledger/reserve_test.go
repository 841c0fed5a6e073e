package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

func dur(d time.Duration) *time.Duration { return &d }

func TestPayWithinRule(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	steps := []struct {
		ch   ledger.StockChange
		want time.Duration
		err  error
	}{
		{ledger.StockChange{Op: ledger.StockSet, Quantity: 5, PayWithin: dur(15 * time.Minute)}, 15 * time.Minute, nil},
		{ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}, 15 * time.Minute, nil},
		{ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(-time.Second)}, 15 * time.Minute, ledger.ErrInvalid},
		{ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(ledger.MaxPayWithin + time.Millisecond)}, 15 * time.Minute, ledger.ErrInvalid},
		{ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(time.Microsecond)}, 15 * time.Minute, ledger.ErrInvalid},
		{ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(0)}, 0, nil},
	}
	for i, s := range steps {
		_, err := l.SetStock(ctx, "x", s.ch)
		if !errors.Is(err, s.err) || (s.err == nil) != (err == nil) {
			t.Fatalf("step %d: got %v, want %v", i, err, s.err)
		}
		it, err := l.Item(ctx, "x")
		if err != nil || it.PayWithin != s.want {
			t.Fatalf("step %d: pay-within %s (%v), want %s", i, it.PayWithin, err, s.want)
		}
	}
	var got []int64
	for _, e := range testenv.Events(t, l) {
		if e.Type == ledger.EventStock {
			got = append(got, e.PayWithinMS)
		}
	}
	want := []int64{900000, 900000, 0}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("stock events' pay_within_ms %v, want %v", got, want)
	}
}

func TestPurchaseReservesUnderPayWithin(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	k := l.Keys()
	setStock(t, l, "free", 5)
	if _, err := l.SetStock(ctx, "paid", ledger.StockChange{Op: ledger.StockSet, Quantity: 5, PayWithin: dur(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	free, err := buy(l, "free", "u1", "r1", 1)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	rsv, err := buy(l, "paid", "u1", "r1", 2)
	if err != nil {
		t.Fatal(err)
	}
	pf, pp := k.Partition("free"), k.Partition("paid")
	if n, _ := rdb.Exists(ctx, k.Order(pf, free.OrderID)).Result(); n != 0 {
		t.Fatalf("an order without a pay-within rule has a state hash")
	}
	if n, _ := rdb.ZCard(ctx, k.Due(pf)).Result(); pf != pp && n != 0 {
		t.Fatalf("an order without a pay-within rule is due")
	}
	h, err := rdb.HGetAll(ctx, k.Order(pp, rsv.OrderID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if h["state"] != "reserved" || h["user_id"] != "u1" || h["item_id"] != "paid" || h["quantity"] != "2" || h["request_id"] != "r1" {
		t.Fatalf("order state %v", h)
	}
	score, err := rdb.ZScore(ctx, k.Due(pp), rsv.OrderID).Result()
	if err != nil || strconv.FormatInt(int64(score), 10) != h["pay_by"] {
		t.Fatalf("due score %v (%v), want pay_by %s", score, err, h["pay_by"])
	}
	for _, e := range testenv.Events(t, l) {
		if e.Type != ledger.EventOrder {
			continue
		}
		switch e.OrderID {
		case free.OrderID:
			if !e.PayBy.IsZero() {
				t.Fatalf("order without the rule has pay_by %v", e.PayBy)
			}
		case rsv.OrderID:
			if got := e.PayBy.Sub(e.Time); got != time.Minute || e.Time.Before(before.Add(-time.Second)) {
				t.Fatalf("pay_by - ts = %s, want 1m", got)
			}
		}
	}
}

// pastDue moves orderID's payment deadline into the past, as if pay-within had elapsed.
func pastDue(t *testing.T, l *ledger.Ledger, rdb *redis.Client, orderID string) {
	t.Helper()
	ctx := context.Background()
	p, _, err := ledger.ParseOrderID(orderID)
	if err != nil {
		t.Fatal(err)
	}
	k := l.Keys()
	if err := rdb.HSet(ctx, k.Order(p, orderID), "pay_by", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZAdd(ctx, k.Due(p), redis.Z{Score: 1, Member: orderID}).Err(); err != nil {
		t.Fatal(err)
	}
}

func reserveItem(t *testing.T, l *ledger.Ledger, item string, n int64, within time.Duration) {
	t.Helper()
	if _, err := l.SetStock(context.Background(), item, ledger.StockChange{Op: ledger.StockSet, Quantity: n, PayWithin: &within}); err != nil {
		t.Fatal(err)
	}
}

// TestReservationTransitions walks every transition of a reservation. Each step is an action
// on the order and its expected outcome; after each case the stock counter and the per-user
// count must be what the order's final state says.
func TestReservationTransitions(t *testing.T) {
	type step struct {
		do    string // pay:<ref>, cancel, expire, late (pay_by passes), pay-as:<user>, cancel-as:<user>
		err   error
		state string
	}
	cases := []struct {
		name  string
		steps []step
		back  bool // units and per-user count back in the end
	}{
		{"pay in time", []step{{"pay:r1", nil, "paid"}}, false},
		{"pay twice same ref", []step{{"pay:r1", nil, "paid"}, {"pay:r1", nil, "paid"}}, false},
		{"pay with another ref", []step{{"pay:r1", nil, "paid"}, {"pay:r2", ledger.ErrPaidOtherwise, "paid"}}, false},
		{"cancel after pay", []step{{"pay:r1", nil, "paid"}, {"cancel", ledger.ErrOrderPaid, "paid"}}, false},
		{"expire after pay", []step{{"pay:r1", nil, "paid"}, {"late", nil, "paid"}, {"expire", nil, "paid"}}, false},
		{"cancel", []step{{"cancel", nil, "cancelled"}}, true},
		{"cancel twice", []step{{"cancel", nil, "cancelled"}, {"cancel", nil, "cancelled"}}, true},
		{"pay after cancel", []step{{"cancel", nil, "cancelled"}, {"pay:r1", ledger.ErrOrderClosed, "cancelled"}}, true},
		{"expire after cancel", []step{{"cancel", nil, "cancelled"}, {"late", nil, "cancelled"}, {"expire", nil, "cancelled"}}, true},
		{"expire before the deadline", []step{{"expire", nil, "reserved"}}, false},
		{"pay past the deadline", []step{{"late", nil, "reserved"}, {"pay:r1", ledger.ErrOrderClosed, "reserved"}}, false},
		{"expire", []step{{"late", nil, "reserved"}, {"expire", nil, "expired"}}, true},
		{"expire twice", []step{{"late", nil, "reserved"}, {"expire", nil, "expired"}, {"expire", nil, "expired"}}, true},
		{"pay after expiry", []step{{"late", nil, "reserved"}, {"expire", nil, "expired"}, {"pay:r1", ledger.ErrOrderClosed, "expired"}}, true},
		{"cancel after expiry", []step{{"late", nil, "reserved"}, {"expire", nil, "expired"}, {"cancel", ledger.ErrOrderClosed, "expired"}}, true},
		{"cancel past the deadline", []step{{"late", nil, "reserved"}, {"cancel", nil, "cancelled"}, {"expire", nil, "cancelled"}}, true},
		{"pay by another user", []step{{"pay-as:u2", ledger.ErrUnknownOrder, "reserved"}, {"pay-as:u1", nil, "paid"}}, false},
		{"cancel by another user", []step{{"cancel-as:u2", ledger.ErrUnknownOrder, "reserved"}, {"cancel-as:u1", nil, "cancelled"}}, true},
		{"pay by no user", []step{{"pay-as:", ledger.ErrUnknownOrder, "reserved"}, {"pay-as:u1", nil, "paid"}}, false},
		{"cancel by no user", []step{{"cancel-as:", ledger.ErrUnknownOrder, "reserved"}, {"cancel-as:u1", nil, "cancelled"}}, true},
		{"cancel by a user of the same prefix", []step{{"cancel-as:u10", ledger.ErrUnknownOrder, "reserved"}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, rdb := newLedger(t)
			ctx := context.Background()
			k := l.Keys()
			reserveItem(t, l, "x", 10, time.Minute)
			rc, err := buy(l, "x", "u1", "q1", 3)
			if err != nil {
				t.Fatal(err)
			}
			id := rc.OrderID
			for i, s := range c.steps {
				var err error
				verb, arg, _ := strings.Cut(s.do, ":")
				switch verb {
				case "pay":
					_, err = l.Pay(ctx, id, "u1", arg)
				case "pay-as":
					_, err = l.Pay(ctx, id, arg, "ref")
				case "cancel":
					_, err = l.Cancel(ctx, id, "u1")
				case "cancel-as":
					_, err = l.Cancel(ctx, id, arg)
				case "expire":
					_, err = l.Expire(ctx, id)
				case "late":
					pastDue(t, l, rdb, id)
				}
				if !errors.Is(err, s.err) || (err == nil) != (s.err == nil) {
					t.Fatalf("step %d %s: got %v, want %v", i, s.do, err, s.err)
				}
				r, err := l.Reservation(ctx, id)
				if err != nil || r.State != s.state {
					t.Fatalf("step %d %s: state %q (%v), want %q", i, s.do, r.State, err, s.state)
				}
			}
			stock, _ := rdb.Get(ctx, k.Stock("x")).Int64()
			bought, _ := rdb.HGet(ctx, k.Users("x"), "u1").Int64()
			wantStock, wantBought := int64(7), int64(3)
			if c.back {
				wantStock, wantBought = 10, 0
			}
			if stock != wantStock || bought != wantBought {
				t.Fatalf("stock %d and user count %d, want %d and %d", stock, bought, wantStock, wantBought)
			}
			// The events fold to the counter: units came back at most once.
			var tally ledger.Tally
			closes := 0
			for _, e := range testenv.Events(t, l) {
				if e.Malformed != nil {
					t.Fatalf("malformed: %v", e.Malformed)
				}
				tally.Apply(e)
				switch e.Type {
				case ledger.EventPaid, ledger.EventCancelled, ledger.EventExpired:
					closes++
					if e.OrderID != id || e.ItemID != "x" || e.UserID != "u1" {
						t.Fatalf("close event %+v", e)
					}
				}
			}
			if tally.Stock != stock || closes > 1 {
				t.Fatalf("events fold to stock %d with %d closing events, counter %d", tally.Stock, closes, stock)
			}
		})
	}
}

func TestPayAndCancelRefusals(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	setStock(t, l, "free", 5)
	rc, err := buy(l, "free", "u1", "q1", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, id, ref string
		err           error
	}{
		{"no payment rule", rc.OrderID, "r", ledger.ErrNoPayment},
		{"unknown order", "0-1-0", "r", ledger.ErrUnknownOrder},
		{"partition beyond the ledger", "1000-1-0", "r", ledger.ErrUnknownOrder},
		{"bad order id", "01-1-0", "r", ledger.ErrInvalid},
		{"empty ref", rc.OrderID, "", ledger.ErrInvalid},
		{"control character in ref", rc.OrderID, "a\x01", ledger.ErrInvalid},
		{"ref too long", rc.OrderID, strings.Repeat("r", 129), ledger.ErrInvalid},
	} {
		if _, err := l.Pay(ctx, c.id, "u1", c.ref); !errors.Is(err, c.err) {
			t.Errorf("pay %s: got %v, want %v", c.name, err, c.err)
		}
		if c.ref != "r" {
			continue
		}
		if _, err := l.Cancel(ctx, c.id, "u1"); !errors.Is(err, c.err) {
			t.Errorf("cancel %s: got %v, want %v", c.name, err, c.err)
		}
	}
	if _, err := l.Pay(ctx, rc.OrderID, "u2", "r"); !errors.Is(err, ledger.ErrUnknownOrder) {
		t.Errorf("pay of another user's order without payment rule: got %v, want unknown", err)
	}
	if _, err := l.Cancel(ctx, rc.OrderID, ""); !errors.Is(err, ledger.ErrUnknownOrder) {
		t.Errorf("cancel without a user of an order without payment rule: got %v, want unknown", err)
	}
}

// TestPayRacesExpiry pays and expires orders at their deadline from many goroutines at once:
// each order ends exactly paid or expired, and only expired orders' units come back.
func TestPayRacesExpiry(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	const orders = 40
	reserveItem(t, l, "race", orders, 300*time.Millisecond)
	ids := make([]string, orders)
	for i := range ids {
		rc, err := buy(l, "race", fmt.Sprintf("u%d", i), fmt.Sprintf("q%d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = rc.OrderID
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	paid, expired := map[string]int{}, map[string]int{}
	for i, id := range ids {
		r, err := l.Reservation(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		// Payers and expirers start around the deadline, the payers spread over 20 ms before
		// it, and keep trying until 20 ms after it.
		payFrom := r.PayBy.Add(-time.Duration(i%20) * time.Millisecond)
		until := r.PayBy.Add(20 * time.Millisecond)
		for range 2 {
			wg.Go(func() {
				time.Sleep(time.Until(payFrom))
				for time.Now().Before(until) {
					if _, err := l.Pay(ctx, id, fmt.Sprintf("u%d", i), "ref-"+id); err == nil {
						mu.Lock()
						paid[id]++
						mu.Unlock()
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
			wg.Go(func() {
				time.Sleep(time.Until(r.PayBy.Add(-5 * time.Millisecond)))
				for time.Now().Before(until) {
					if done, err := l.Expire(ctx, id); err == nil && done {
						mu.Lock()
						expired[id]++
						mu.Unlock()
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
	}
	wg.Wait()
	// On a stalled machine an order may see neither a payer nor an expirer in its window: the
	// sweeper's job then, one more expiry after the deadline.
	for _, id := range ids {
		if paid[id] == 0 && expired[id] == 0 {
			if done, err := l.Expire(ctx, id); err == nil && done {
				expired[id]++
			}
		}
	}
	var nPaid, nExpired int64
	for _, id := range ids {
		r, err := l.Reservation(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.State == ledger.StatePaid && expired[id] == 0 && paid[id] > 0:
			nPaid++
		case r.State == ledger.StateExpired && expired[id] == 1 && paid[id] == 0:
			nExpired++
		default:
			t.Fatalf("order %s: state %s, paid %d times, expired %d times", id, r.State, paid[id], expired[id])
		}
	}
	stock, _ := rdb.Get(ctx, l.Keys().Stock("race")).Int64()
	if stock != nExpired {
		t.Fatalf("stock %d, want the %d expired units (paid %d)", stock, nExpired, nPaid)
	}
	t.Logf("%d paid, %d expired", nPaid, nExpired)
}

// TestRestockAfterExpiryGivesUnitsOnce: an order the projector cannot project is restocked;
// if it expired (or was cancelled) first, its units are back already and stay counted once.
func TestRestockAfterExpiryGivesUnitsOnce(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	k := l.Keys()
	p := k.Partition("x")
	if err := l.EnsureGroup(ctx, p, "projector"); err != nil {
		t.Fatal(err)
	}
	reserveItem(t, l, "x", 10, time.Minute)
	a, _ := buy(l, "x", "u1", "q1", 2)
	b, _ := buy(l, "x", "u2", "q2", 3)
	pastDue(t, l, rdb, a.OrderID)
	if done, err := l.Expire(ctx, a.OrderID); err != nil || !done {
		t.Fatalf("expire: %v %v", done, err)
	}
	evs, err := l.ReadGroup(ctx, p, "projector", "c", ">", 10, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Type != ledger.EventOrder {
			continue
		}
		done, err := l.Restock(ctx, e, "test")
		if err != nil || done != (e.OrderID == b.OrderID) {
			t.Fatalf("restock %s: %v %v", e.OrderID, done, err)
		}
	}
	if stock, _ := rdb.Get(ctx, k.Stock("x")).Int64(); stock != 10 {
		t.Fatalf("stock %d, want 10", stock)
	}
	if r, _ := l.Reservation(ctx, b.OrderID); r.State != ledger.StateCancelled {
		t.Fatalf("restocked reserved order is %q, want cancelled", r.State)
	}
	if _, err := l.Pay(ctx, b.OrderID, "u2", "r"); !errors.Is(err, ledger.ErrOrderClosed) {
		t.Fatalf("pay of a restocked order: %v", err)
	}
	if n, _ := rdb.ZCard(ctx, k.Due(p)).Result(); n != 0 {
		t.Fatalf("%d orders still due", n)
	}
}
