package tests

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// reopenSettings are the sold-out lease and iteration count of the reopening tests:
// FLASHSALE_REOPEN_LEASE (default 200ms, so that make test stays short) and
// FLASHSALE_REOPEN_ITERATIONS (default 20); the figures in docs/PERFORMANCE.md come from
// FLASHSALE_REOPEN_LEASE=1s FLASHSALE_REOPEN_ITERATIONS=500.
func reopenSettings(t *testing.T) (time.Duration, int) {
	t.Helper()
	lease, n := 200*time.Millisecond, 20
	if v := os.Getenv("FLASHSALE_REOPEN_LEASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("FLASHSALE_REOPEN_LEASE %q: %v", v, err)
		}
		lease = d
	}
	if v := os.Getenv("FLASHSALE_REOPEN_ITERATIONS"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 {
			t.Fatalf("FLASHSALE_REOPEN_ITERATIONS %q: want a count", v)
		}
		n = i
	}
	return lease, n
}

// startIngest starts `flashsale ingest` with env and waits until it listens.
func startIngest(t *testing.T, name string, env []string) *server {
	t.Helper()
	p := startProcess(t, name, env, "ingest")
	return &server{process: p, httpAddr: p.waitLog(t, httpListening, 15*time.Second)[1]}
}

// soldOutAnswers reads srv's flashsale_sold_out_answers_total{source} from /metrics.
func soldOutAnswers(t *testing.T, c *http.Client, srv *server, source string) int64 {
	t.Helper()
	resp, err := c.Get(srv.url("/metrics"))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	prefix := `flashsale_sold_out_answers_total{source="` + source + `"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sc.Text(), err)
			}
			return int64(f)
		}
	}
	t.Fatalf("/metrics of %s has no %s", srv.name, prefix)
	return 0
}

// untilLocal buys item through srv as new requests until one is answered "sold out" from
// memory (the process's local sold-out count grows); every answer must be 410.
func untilLocal(t *testing.T, c *http.Client, srv *server, item, tag string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		before := soldOutAnswers(t, c, srv, "local")
		code, r, err := purchaseHTTP(c, srv, fmt.Sprintf("%s-probe-%d", tag, i), "prober", item, 1)
		if err != nil || code != http.StatusGone {
			t.Fatalf("%s: probe of sold-out %s: got %d %+v (%v), want 410", srv.name, item, code, r, err)
		}
		if soldOutAnswers(t, c, srv, "local") > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no sold-out answer from memory within 15s", srv.name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two ingest processes answer a sold-out item from memory. `flashsale stock add ITEM 1` runs
// from the CLI; once it has returned, a purchase through the process that had just said "sold
// out" gets the unit at once, and the winner's retry through the other gets its order: never
// 410 (the reopening lease; the TTL cache it replaced said 410 in up to half of such tries).
func TestStockAddSellsAtOnceAcrossProcesses(t *testing.T) {
	lease, iterations := reopenSettings(t)
	s := newStack(t)
	env := append(s.env(s.dsn), "FLASHSALE_SOLD_OUT_LEASE="+lease.String())
	a, b := startIngest(t, "ingest a", env), startIngest(t, "ingest b", env)
	c := newHTTPClient()
	runCmd(t, env, "stock", "set", "hot", "0")
	gone := 0
	start := time.Now()
	for i := range iterations {
		untilLocal(t, c, a, "hot", fmt.Sprintf("a%d", i))
		untilLocal(t, c, b, "hot", fmt.Sprintf("b%d", i))
		out := runCmd(t, env, "stock", "add", "hot", "1")
		if !strings.Contains(out, "back on sale since") {
			t.Fatalf("stock add: %q, want it to say when the item was back on sale", out)
		}
		req, user := fmt.Sprintf("winner-%d", i), fmt.Sprintf("user-%d", i)
		code, r, err := purchaseHTTP(c, a, req, user, "hot", 1)
		if err != nil {
			t.Fatal(err)
		}
		switch code {
		case http.StatusOK:
		case http.StatusGone:
			gone++
			t.Errorf("iteration %d: 410 sold out from %s after the stock add returned", i, a.name)
			continue
		default:
			t.Fatalf("iteration %d: got %d %+v", i, code, r)
		}
		for _, srv := range []*server{b, a} {
			code, rr, err := purchaseHTTP(c, srv, req, user, "hot", 1)
			if err != nil || code != http.StatusConflict || rr.OrderID != r.OrderID {
				t.Fatalf("iteration %d: winner's retry through %s: got %d %+v (%v), want 409 with %s", i, srv.name, code, rr, err, r.OrderID)
			}
		}
	}
	t.Logf("%d iterations (lease %s) in %s: %d answers of 410 after the CLI returned", iterations, lease, time.Since(start).Round(time.Millisecond), gone)
}

// Three ingest processes sell one item to concurrent buyers while units come back again and
// again (stock adds from another client, each a reopening). Exactly the units put on
// sale are sold, every acknowledged order is in the ledger, and every winner's retry through
// any process gets its order.
func TestNoOversellDuringReopenings(t *testing.T) {
	lease, _ := reopenSettings(t)
	s := newStack(t)
	env := append(s.env(s.dsn), "FLASHSALE_SOLD_OUT_LEASE="+lease.String())
	servers := make([]*server, 3)
	for i := range servers {
		servers[i] = startIngest(t, fmt.Sprintf("ingest %d", i), env)
	}
	l, err := ledger.Open(context.Background(), s.rdb, ledger.Config{SoldOutLease: lease})
	if err != nil {
		t.Fatal(err)
	}
	const initial, adds, perAdd, buyers = 20, 8, 5, 48
	if _, err := l.SetStock(context.Background(), "race", ledger.StockChange{Op: ledger.StockSet, Quantity: initial}); err != nil {
		t.Fatal(err)
	}
	c := newHTTPClient()
	var (
		mu    sync.Mutex
		won   = map[string]string{} // order -> request_id|user
		done  atomic.Bool
		wg    sync.WaitGroup
		sent  atomic.Int64
		gones atomic.Int64
	)
	for w := range buyers {
		wg.Go(func() {
			for i := 0; !done.Load(); i++ {
				srv := servers[(w+i)%len(servers)]
				req, user := fmt.Sprintf("r%d-%d", w, i), fmt.Sprintf("u%d", w)
				code, r, err := purchaseHTTP(c, srv, req, user, "race", 1)
				sent.Add(1)
				switch {
				case err != nil:
					t.Errorf("purchase through %s: %v", srv.name, err)
					return
				case code == http.StatusOK:
					mu.Lock()
					won[r.OrderID] = req + "|" + user
					mu.Unlock()
				case code == http.StatusGone:
					gones.Add(1)
				default:
					t.Errorf("purchase through %s: got %d %+v", srv.name, code, r)
					return
				}
			}
		})
	}
	for range adds {
		time.Sleep(lease / 2)
		if _, err := l.SetStock(context.Background(), "race", ledger.StockChange{Op: ledger.StockAdd, Quantity: perAdd}); err != nil {
			t.Error(err)
		}
	}
	// Every unit is sold within a few leases of the last add.
	deadline := time.Now().Add(30 * time.Second)
	for {
		it, err := l.Item(context.Background(), "race")
		if err != nil {
			t.Fatal(err)
		}
		if it.Stock == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d units still unsold 30s after the last add", it.Stock)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(lease) // buyers go on meeting the sold-out item, answered from memory
	done.Store(true)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	const total = initial + adds*perAdd
	if len(won) != total {
		t.Fatalf("%d orders acknowledged, want the %d units put on sale", len(won), total)
	}
	orders := 0
	for _, e := range s.ledgerOrders(t) {
		if e.ItemID == "race" {
			orders++
			if _, ok := won[e.OrderID]; !ok {
				t.Errorf("order %s in the ledger was not acknowledged", e.OrderID)
			}
		}
	}
	if orders != total {
		t.Fatalf("%d orders in the ledger, want %d", orders, total)
	}
	for id, ru := range won {
		req, user, _ := strings.Cut(ru, "|")
		for _, srv := range servers {
			code, r, err := purchaseHTTP(c, srv, req, user, "race", 1)
			if err != nil || code != http.StatusConflict || r.OrderID != id {
				t.Fatalf("retry of %s through %s: got %d %+v (%v), want 409", id, srv.name, code, r, err)
			}
		}
	}
	var local int64
	for _, srv := range servers {
		local += soldOutAnswers(t, c, srv, "local")
	}
	if local == 0 {
		t.Fatal("no sold-out answer from memory: the race did not exercise the lease")
	}
	t.Logf("%d purchases, %d sold, %d answered 410 (%d of them from memory), %d reopenings", sent.Load(), total, gones.Load(), local, adds)
}
