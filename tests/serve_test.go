package tests

import (
	"context"
	"errors"
	"fmt"
	"github.com/flashsale/flashsale/tests/testenv"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// TestServeEndToEnd sells an item over HTTP through a real `flashsale serve` and checks that
// exactly the stock is sold and that every sale lands in MySQL once.
func TestServeEndToEnd(t *testing.T) { forTopologies(t, testServeEndToEnd) }

func testServeEndToEnd(t *testing.T, tp testenv.Topology) {
	s := newStackOn(t, tp)
	const item, stock, buyers, workers = "phone", 200, 300, 50
	if out := runCmd(t, s.env(s.dsn), "stock", "set", item, fmt.Sprint(stock)); !strings.Contains(out, "stock 200") {
		t.Fatalf("stock set: got %q, want it to report stock 200", out)
	}
	srv := startServe(t, s, s.dsn, "-consumer", "e2e")
	c := newHTTPClient()

	var mu sync.Mutex
	var acked []string
	owners := map[string]string{} // order ID -> its user
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < buyers; i += workers {
				status, r, err := purchaseHTTP(c, srv, fmt.Sprintf("req-%d", i), fmt.Sprintf("user-%d", i), item, 1)
				if err != nil {
					t.Errorf("purchase %d: %v", i, err)
					continue
				}
				mu.Lock()
				statuses[status]++
				if status == http.StatusOK {
					if !r.Success || r.OrderID == "" {
						t.Errorf("purchase %d: got 200 %+v, want success with an order_id", i, r)
					}
					acked = append(acked, r.OrderID)
					owners[r.OrderID] = fmt.Sprintf("user-%d", i)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if statuses[http.StatusOK] != stock || statuses[http.StatusGone] != buyers-stock || len(statuses) != 2 {
		t.Fatalf("got statuses %v, want %d x 200 and %d x 410", statuses, stock, buyers-stock)
	}

	s.waitDrained(t, stock, 30*time.Second)

	var order struct {
		OrderID string `json:"order_id"`
		ItemID  string `json:"item_id"`
		Status  string `json:"status"`
	}
	if code := getJSON(t, c, srv, "/api/orders/"+acked[0]+"?user_id="+owners[acked[0]], &order); code != http.StatusOK {
		t.Fatalf("GET order %s: got status %d, want 200", acked[0], code)
	}
	if order.OrderID != acked[0] || order.ItemID != item || order.Status != "confirmed" {
		t.Errorf("GET order %s: got %+v, want it confirmed for item %s", acked[0], order, item)
	}
	tests := []struct {
		id   string
		want int
	}{
		{"0-1-0", http.StatusNotFound},
		{"garbage", http.StatusBadRequest},
	}
	for _, tt := range tests {
		var r apiReply
		if got := getJSON(t, c, srv, "/api/orders/"+tt.id+"?user_id=user-0", &r); got != tt.want || r.Success || r.Message == "" {
			t.Errorf("GET order %q: got %d %+v, want %d with a message", tt.id, got, r, tt.want)
		}
	}
	var it struct {
		Stock int64 `json:"stock"`
	}
	if code := getJSON(t, c, srv, "/api/items/"+item, &it); code != http.StatusOK || it.Stock != 0 {
		t.Errorf("GET item %s: got %d stock %d, want 200 stock 0", item, code, it.Stock)
	}

	if out := runCmd(t, s.env(s.dsn), "stock", "get", item); strings.TrimSpace(out) != "0" {
		t.Errorf("stock get %s: got %q, want 0", item, out)
	}
	if out := runCmd(t, s.env(s.dsn), "migrate"); !strings.Contains(out, "schema up to date") {
		t.Errorf("second migrate: got %q, want it to say the schema is up to date", out)
	}

	s.checkExactlyOnce(t, acked, map[string]int64{item: stock})
}

// burstOutcome is how one purchase of the burst ended, from the client's side.
type burstOutcome int

const (
	outcomeOK      burstOutcome = iota // 200: the order exists
	outcomeRefused                     // a reply other than 200: no order
	outcomeUnsent                      // connection refused: never reached the server
	outcomeUnknown                     // any other transport error: the reply was lost
)

// TestShutdownDuringBurst sends SIGTERM to `flashsale serve` in the middle of a burst of
// purchases: it must exit 0 within its shutdown timeout, every 200 must be a real order, no
// order may exist that no client asked for or that was refused, and after a restart the
// projector must bring MySQL to exactly the ledger's orders.
func TestShutdownDuringBurst(t *testing.T) {
	s := newStack(t)
	const item, stock, workers = "console", 100000, 64
	const shutdownTimeout = 5 * time.Second
	s.setStock(t, item, stock)
	srv := startServe(t, s, s.dsn, "-consumer", "burst", "-shutdown-timeout", shutdownTimeout.String())
	c := newHTTPClient()

	var mu sync.Mutex
	outcomes := map[string]burstOutcome{} // by request_id
	replies := map[string]string{}        // order_id of each 200, by request_id
	var oks atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				req := fmt.Sprintf("w%d-%d", w, i)
				status, r, err := purchaseHTTP(c, srv, req, fmt.Sprintf("user-%d", w), item, 1)
				var o burstOutcome
				switch {
				case errors.Is(err, syscall.ECONNREFUSED):
					o = outcomeUnsent
				case err != nil:
					o = outcomeUnknown
				case status == http.StatusOK:
					o = outcomeOK
					oks.Add(1)
				default:
					o = outcomeRefused
				}
				mu.Lock()
				outcomes[req] = o
				if o == outcomeOK {
					replies[req] = r.OrderID
				}
				mu.Unlock()
				if o == outcomeUnsent {
					return // the listener is closed for good
				}
			}
		})
	}

	deadline := time.Now().Add(15 * time.Second)
	for oks.Load() < 500 {
		if time.Now().After(deadline) {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("only %d purchases succeeded within 15s", oks.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.signal(t, syscall.SIGTERM)
	sent := time.Now()
	code, exited := srv.wait(shutdownTimeout + 3*time.Second)
	took := time.Since(sent)
	stop.Store(true)
	wg.Wait()
	if !exited {
		t.Fatalf("serve still runs %s after SIGTERM (shutdown timeout %s)", took, shutdownTimeout)
	}
	if code != 0 {
		t.Fatalf("serve exited with code %d after SIGTERM, want 0", code)
	}
	if took > shutdownTimeout+time.Second {
		t.Errorf("serve took %s to exit after SIGTERM, want at most the shutdown timeout %s", took, shutdownTimeout)
	}

	counts := map[burstOutcome]int{}
	for _, o := range outcomes {
		counts[o]++
	}
	t.Logf("burst: %d ok, %d refused, %d never sent, %d lost replies; exit after %s",
		counts[outcomeOK], counts[outcomeRefused], counts[outcomeUnsent], counts[outcomeUnknown], took.Round(time.Millisecond))
	if counts[outcomeUnsent] == 0 {
		t.Errorf("no purchase met a closed listener: SIGTERM did not land mid-burst")
	}

	orders := s.ledgerOrders(t)
	byRequest := map[string]ledger.Event{}
	for _, e := range orders {
		if prev, dup := byRequest[e.RequestID]; dup {
			t.Errorf("request %s holds two orders: %s and %s", e.RequestID, prev.OrderID, e.OrderID)
		}
		byRequest[e.RequestID] = e
	}
	for req, id := range replies {
		e, ok := orders[id]
		if !ok {
			t.Errorf("request %s got 200 with order %s, which is not in the ledger", req, id)
			continue
		}
		if e.RequestID != req {
			t.Errorf("order %s: got request_id %s, want %s", id, e.RequestID, req)
		}
	}
	lost := 0
	for req, e := range byRequest {
		o, asked := outcomes[req]
		switch {
		case !asked:
			t.Errorf("ledger holds order %s for request %s, which nobody sent", e.OrderID, req)
		case o == outcomeRefused || o == outcomeUnsent:
			t.Errorf("ledger holds order %s for request %s, whose purchase was refused or never sent", e.OrderID, req)
		case o == outcomeUnknown:
			lost++
		}
	}
	if got, want := len(orders)-len(replies), lost; got != want || lost > counts[outcomeUnknown] {
		t.Errorf("ledger orders %d - 200s %d = %d, want %d orders with a lost reply (of %d lost replies)",
			len(orders), len(replies), got, want, counts[outcomeUnknown])
	}
	it, err := s.l.Item(context.Background(), item)
	if err != nil {
		t.Fatalf("read item: %v", err)
	}
	if got := it.Stock + int64(len(orders)); got != stock {
		t.Errorf("stock %d + orders %d = %d, want %d", it.Stock, len(orders), got, stock)
	}
	if t.Failed() {
		t.FailNow()
	}

	startServe(t, s, s.dsn, "-consumer", "burst")
	s.waitDrained(t, len(orders), 30*time.Second)
	ids := make([]string, 0, len(orders))
	for id := range orders {
		ids = append(ids, id)
	}
	s.checkExactlyOnce(t, ids, map[string]int64{item: stock})
}
