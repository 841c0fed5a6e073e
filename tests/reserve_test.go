package tests

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// postOrder posts to /api/orders/{id}/{verb} and returns the status.
func postOrder(t *testing.T, c *http.Client, srv *server, id, verb, body string) int {
	t.Helper()
	resp, err := c.Post(srv.url("/api/orders/"+id+"/"+verb), "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("%s %s: %v", verb, id, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestChaosReservations runs a sale whose orders must be paid within 600 ms through
// `flashsale serve` (no sweeper) and two `flashsale project` processes, each with its sweeper:
// winners pay (some twice, as after a lost reply), cancel, or never pay. Both sweepers are
// killed with SIGKILL before the deadlines and pass them dead (an overdue unpaid order then
// refuses payment, 410, and stays reserved); restarted, they catch up together, and Redis is
// killed with SIGKILL mid-sweep and restarted from its AOF. In the end every order is paid,
// cancelled or expired exactly once, the stock is what was put on sale minus the paid units,
// the status API agrees, and `flashsale audit` is clean. The order count and pay-within scale
// with FLASHSALE_CHAOS_SCALE (120 orders in 600 ms at 1).
func TestChaosReservations(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	const item = "rsv"
	orders := 120 * chaosScale(t)
	stock := int64(2 * orders)
	within := scaled(t, 600*time.Millisecond)
	if _, err := s.l.SetStock(ctx, item, ledger.StockChange{Op: ledger.StockSet, Quantity: stock, PayWithin: &within}); err != nil {
		t.Fatal(err)
	}
	sweep := []string{"-sweep-interval", "20ms", "-sweep-batch", "5"}
	srv := startServe(t, s, s.dsn, "-consumer", "s1", "-sweep-interval", "0")
	p1 := startProject(t, s, append([]string{"-consumer", "p1"}, sweep...)...)
	p2 := startProject(t, s, append([]string{"-consumer", "p2"}, sweep...)...)
	c := newHTTPClient()
	start := time.Now()

	want := map[string]string{}
	users := map[string]string{} // order ID -> its user, who alone may pay, cancel or read it
	var paidUnits int64
	for i := range orders {
		status, r, err := purchaseHTTP(c, srv, fmt.Sprintf("q%d", i), fmt.Sprintf("u%d", i), item, 1)
		if err != nil || status != http.StatusOK {
			t.Fatalf("purchase %d: %d %+v %v", i, status, r, err)
		}
		id := r.OrderID
		users[id] = fmt.Sprintf("u%d", i)
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			ref := `{"payment_ref":"pay-` + id + `","user_id":"` + users[id] + `"}`
			if got := postOrder(t, c, srv, id, "pay", ref); got != http.StatusOK {
				t.Fatalf("pay %s: %d", id, got)
			}
			if i%3 == 0 { // the reply was lost: the client pays again, with the same ref
				if got := postOrder(t, c, srv, id, "pay", ref); got != http.StatusOK {
					t.Fatalf("pay %s again: %d", id, got)
				}
			}
			want[id], paidUnits = "paid", paidUnits+1
		case 6:
			if got := postOrder(t, c, srv, id, "cancel", `{"user_id":"`+users[id]+`"}`); got != http.StatusOK {
				t.Fatalf("cancel %s: %d", id, got)
			}
			if got := postOrder(t, c, srv, id, "pay", `{"payment_ref":"late","user_id":"`+users[id]+`"}`); got != http.StatusGone {
				t.Fatalf("pay after cancel %s: %d, want 410", id, got)
			}
			want[id] = "cancelled"
		default:
			want[id] = "expired"
		}
	}

	// Both sweepers die before the first deadline (the purchases above took less than it).
	if time.Since(start) > within-50*time.Millisecond {
		t.Skipf("placing the orders took %s, longer than pay-within %s: too slow a machine for this test", time.Since(start), within)
	}
	p1.kill()
	p2.kill()
	time.Sleep(within + 100*time.Millisecond)
	due := s.l.Keys().Due(s.l.Keys().Partition(item))
	dueAtKill, err := s.rdb.ZCard(ctx, due).Result()
	if err != nil || dueAtKill != int64(orders*3/10) {
		t.Fatalf("%d orders due with no sweeper running (%v), want the %d never paid", dueAtKill, err, orders*3/10)
	}
	for id, w := range want {
		if w == "expired" {
			if got := postOrder(t, c, srv, id, "pay", `{"payment_ref":"too-late","user_id":"`+users[id]+`"}`); got != http.StatusGone {
				t.Fatalf("pay of %s past its deadline: %d, want 410", id, got)
			}
			break
		}
	}
	// Restarted, both catch up at once; Redis dies under them and comes back from its AOF.
	q1 := startProject(t, s, append([]string{"-consumer", "p1"}, sweep...)...)
	q2 := startProject(t, s, append([]string{"-consumer", "p2"}, sweep...)...)
	var dueBefore int64
	for wait := time.Now().Add(15 * time.Second); ; time.Sleep(time.Millisecond) {
		if dueBefore, err = s.rdb.ZCard(ctx, due).Result(); err == nil && dueBefore < dueAtKill {
			break // a sweeper is at work
		}
		if q1.exited() || q2.exited() || time.Now().After(wait) {
			t.Fatalf("the restarted sweepers expired nothing (%d due, %v)", dueBefore, err)
		}
	}
	s.redis.Kill()
	time.Sleep(300 * time.Millisecond)
	restarted := time.Now()
	if err := s.redis.Start(); err != nil {
		t.Fatalf("restart redis: %v", err)
	}

	deadline := time.Now().Add(drainTimeout(t))
	for {
		n, err := s.rdb.ZCard(ctx, due).Result()
		if err == nil && n == 0 && s.groupsSettled(t) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled in time: %d due (%v), groups settled %v", n, err, s.groupsSettled(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d orders, %d overdue while the sweepers were dead, %d still due at the Redis kill; all closed and projected %s after the Redis restart",
		orders, dueAtKill, dueBefore, time.Since(restarted).Round(time.Millisecond))

	it, err := s.l.Item(ctx, item)
	if err != nil || it.Stock != stock-paidUnits {
		t.Fatalf("stock %d (%v), want %d put on sale minus %d paid", it.Stock, err, stock, paidUnits)
	}
	closes := map[string]int{}
	for _, e := range eventsOf(t, s, item) {
		switch e.Type {
		case ledger.EventPaid, ledger.EventCancelled, ledger.EventExpired:
			closes[e.OrderID]++
			if string(e.Type) != want[e.OrderID] {
				t.Errorf("order %s: %s event, want %s", e.OrderID, e.Type, want[e.OrderID])
			}
		}
	}
	for id, w := range want {
		if closes[id] != 1 {
			t.Errorf("order %s (%s): %d closing events, want 1", id, w, closes[id])
		}
		var o struct {
			Status string     `json:"status"`
			PayBy  *time.Time `json:"pay_by"`
		}
		if code := getJSON(t, c, srv, "/api/orders/"+id+"?user_id="+users[id], &o); code != http.StatusOK || o.Status != w || o.PayBy == nil {
			t.Errorf("GET order %s: %d %+v, want %s with pay_by", id, code, o, w)
		}
	}
	if out := runCmd(t, s.env(s.dsn), "audit"); !strings.Contains(out, "clean") {
		t.Fatalf("audit:\n%s", out)
	}
	var rows int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM orders WHERE status IN ('paid', 'expired', 'cancelled')").Scan(&rows); err != nil || rows != orders {
		t.Fatalf("%d closed rows in MySQL (%v), want %d", rows, err, orders)
	}
}

// eventsOf returns item's ledger events, failing on a malformed one.
func eventsOf(t *testing.T, s *stack, item string) []ledger.Event {
	t.Helper()
	p := s.l.Keys().Partition(item)
	var out []ledger.Event
	after := ""
	for {
		evs, err := s.l.Range(context.Background(), p, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		for _, e := range evs {
			if e.Malformed != nil {
				t.Fatalf("malformed: %v", e.Malformed)
			}
			if e.ItemID == item {
				out = append(out, e)
			}
		}
		after = evs[len(evs)-1].StreamID
	}
}
