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

// TestReservationsSurviveCrashes runs a sale whose orders must be paid within 500 ms through
// `flashsale serve` and `flashsale project`, each with its sweeper: winners pay (some twice, as
// after a lost reply), cancel, or never pay. While the deadlines pass, Redis is killed with
// SIGKILL mid-sweep and restarted from its AOF, and the project process is killed with SIGKILL
// and restarted. In the end every order is paid, cancelled or expired exactly once, the stock
// is what was put on sale minus the paid units, the status API agrees, and `flashsale audit`
// is clean.
func TestReservationsSurviveCrashes(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	const item, stock, orders = "rsv", 200, 120
	within := 500 * time.Millisecond
	if _, err := s.l.SetStock(ctx, item, ledger.StockChange{Op: ledger.StockSet, Quantity: stock, PayWithin: &within}); err != nil {
		t.Fatal(err)
	}
	sweep := []string{"-sweep-interval", "20ms", "-sweep-batch", "5"}
	srv := startServe(t, s, s.dsn, append([]string{"-consumer", "s1"}, sweep...)...)
	proj := startProject(t, s, append([]string{"-consumer", "p1"}, sweep...)...)
	c := newHTTPClient()

	want := map[string]string{}
	var paidUnits int64
	for i := range orders {
		status, r, err := purchaseHTTP(c, srv, fmt.Sprintf("q%d", i), fmt.Sprintf("u%d", i), item, 1)
		if err != nil || status != http.StatusOK {
			t.Fatalf("purchase %d: %d %+v %v", i, status, r, err)
		}
		id := r.OrderID
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			ref := `{"payment_ref":"pay-` + id + `"}`
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
			if got := postOrder(t, c, srv, id, "cancel", ""); got != http.StatusOK {
				t.Fatalf("cancel %s: %d", id, got)
			}
			if got := postOrder(t, c, srv, id, "pay", `{"payment_ref":"late"}`); got != http.StatusGone {
				t.Fatalf("pay after cancel %s: %d, want 410", id, got)
			}
			want[id] = "cancelled"
		default:
			want[id] = "expired"
		}
	}

	// The first deadlines pass: kill Redis while the sweepers work, restart it from its AOF.
	time.Sleep(within - 50*time.Millisecond)
	s.redis.Kill()
	time.Sleep(300 * time.Millisecond)
	if err := s.redis.Start(); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	// And kill the project process (sweeper and projector) while it catches up.
	time.Sleep(30 * time.Millisecond)
	proj.kill()
	startProject(t, s, append([]string{"-consumer", "p1"}, sweep...)...)

	deadline := time.Now().Add(30 * time.Second)
	for {
		due, err := s.rdb.ZCard(ctx, s.l.Keys().Due(s.l.Keys().Partition(item))).Result()
		if err == nil && due == 0 && s.groupsSettled(t) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled in 30s: %d due (%v), groups settled %v", due, err, s.groupsSettled(t))
		}
		time.Sleep(50 * time.Millisecond)
	}

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
		if code := getJSON(t, c, srv, "/api/orders/"+id, &o); code != http.StatusOK || o.Status != w || o.PayBy == nil {
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
