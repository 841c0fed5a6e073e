package tests

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/tests/testenv"
)

// TestMySQLOutage cuts `flashsale serve` off from MySQL for a few seconds during a stream of
// purchases: sales go on (ingest does not need MySQL), /ready says 503, nothing is cancelled
// or restocked, and once MySQL is back the backlog lands exactly once.
func TestMySQLOutage(t *testing.T) {
	s := newStack(t)
	const item, stock, workers = "tv", 100000, 4
	const outage = 5 * time.Second
	s.setStock(t, item, stock)
	proxy := testenv.StartProxy(t, testenv.MySQLAddr(t, s.dsn))
	srv := startServe(t, s, testenv.WithMySQLAddr(t, s.dsn, proxy.Addr), "-consumer", "outage")
	c := newHTTPClient()
	if code := getJSON(t, c, srv, "/ready", nil); code != http.StatusOK {
		t.Fatalf("GET /ready before the outage: got %d, want 200", code)
	}

	var mu sync.Mutex
	var acked []string
	var failures []string
	var cut atomic.Bool
	var okDuringCut atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				req := fmt.Sprintf("w%d-%d", w, i)
				during := cut.Load()
				status, r, err := purchaseHTTP(c, srv, req, "user-"+req, item, 1)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("%s: %v", req, err))
				case status != http.StatusOK:
					failures = append(failures, fmt.Sprintf("%s: got %d %q", req, status, r.Message))
				default:
					acked = append(acked, r.OrderID)
					if during && cut.Load() {
						okDuringCut.Add(1)
					}
				}
				mu.Unlock()
			}
		})
	}
	stopBuyers := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	defer stopBuyers()

	// Let the projector show it works before the outage.
	deadline := time.Now().Add(10 * time.Second)
	for s.countOrders(t) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no order reached MySQL within 10s before the outage")
		}
		time.Sleep(20 * time.Millisecond)
	}

	proxy.Cut()
	cut.Store(true)
	cutAt := time.Now()
	deadline = cutAt.Add(outage)
	for getJSON(t, c, srv, "/ready", nil) != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatalf("GET /ready did not say 503 within %s of the cut", outage)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Until(cutAt.Add(time.Second)))
	rowsInOutage := s.countOrders(t)
	time.Sleep(time.Until(deadline))
	if got := s.countOrders(t); got != rowsInOutage {
		t.Errorf("orders table grew from %d to %d rows while MySQL was cut off from serve", rowsInOutage, got)
	}
	if code := getJSON(t, c, srv, "/ready", nil); code != http.StatusServiceUnavailable {
		t.Errorf("GET /ready %s into the outage: got %d, want 503", time.Since(cutAt).Round(time.Millisecond), code)
	}
	cut.Store(false)
	proxy.Restore()

	deadline = time.Now().Add(15 * time.Second)
	for getJSON(t, c, srv, "/ready", nil) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("GET /ready did not say 200 within 15s of the restore")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	stopBuyers()

	mu.Lock()
	defer mu.Unlock()
	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more failed purchases", len(failures)-10)
			break
		}
		t.Errorf("purchase failed: %s", f)
	}
	if okDuringCut.Load() == 0 {
		t.Errorf("no purchase succeeded while MySQL was cut off")
	}
	t.Logf("%d purchases, %d of them while MySQL was cut off", len(acked), okDuringCut.Load())

	srv.waitLog(t, writeRetried, time.Second)
	s.waitDrained(t, len(acked), 30*time.Second)
	s.checkExactlyOnce(t, acked, map[string]int64{item: stock})
}
