package tests

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// stack is one test's private backend: a Redis of its own (one redis-server, a cluster or a
// sentinel set-up), a MySQL database of its own with the schema applied by `flashsale
// migrate`, and a ledger handle on that Redis.
type stack struct {
	target *testenv.Target
	redis  *testenv.Redis // the redis-server of the single topology; nil on the others
	rdb    redis.UniversalClient
	l      *ledger.Ledger
	dsn    string
	db     *sql.DB
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackOn(t, testenv.Single)
}

// newStackOn is newStack on topology tp.
func newStackOn(t *testing.T, tp testenv.Topology) *stack {
	t.Helper()
	target := testenv.Start(t, tp)
	dsn, db := testenv.MySQL(t)
	l, err := ledger.Open(context.Background(), target.Client, ledger.Config{})
	if err != nil {
		t.Fatalf("open ledger: %v", err)
	}
	s := &stack{target: target, redis: target.Single, rdb: target.Client, l: l, dsn: dsn, db: db}
	runCmd(t, s.env(dsn), "migrate")
	return s
}

// forTopologies runs test as a subtest on every topology (only the single one with -short).
func forTopologies(t *testing.T, test func(t *testing.T, tp testenv.Topology)) {
	for _, tp := range testenv.Topologies {
		if testing.Short() && tp != testenv.Single {
			continue
		}
		t.Run(string(tp), func(t *testing.T) { test(t, tp) })
	}
}

// env is the environment of a flashsale process on this stack, with dsn as its MySQL.
func (s *stack) env(dsn string) []string {
	return append(append([]string{}, s.target.Env...),
		"FLASHSALE_MYSQL_DSN="+dsn,
		"FLASHSALE_HTTP_ADDR=127.0.0.1:0",
		"FLASHSALE_GRPC_ADDR=127.0.0.1:0",
	)
}

// setStock puts n units of item on sale through the ledger.
func (s *stack) setStock(t *testing.T, item string, n int64) {
	t.Helper()
	if _, err := s.l.SetStock(context.Background(), item, ledger.StockChange{Op: ledger.StockSet, Quantity: n}); err != nil {
		t.Fatalf("set stock of %s: %v", item, err)
	}
}

// placeOrders buys one unit n times, spread over items, from workers goroutines straight
// through the ledger, and returns the order IDs.
func (s *stack) placeOrders(t *testing.T, items []string, n, workers int) []string {
	t.Helper()
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				rc, err := s.l.Purchase(context.Background(), ledger.PurchaseRequest{
					RequestID: "bulk-" + strconv.Itoa(i),
					UserID:    "user-" + strconv.Itoa(i),
					ItemID:    items[i%len(items)],
					Quantity:  1,
				})
				if err != nil {
					t.Errorf("purchase %d: %v", i, err)
					return
				}
				mu.Lock()
				ids = append(ids, rc.OrderID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// countOrders returns the number of rows of the orders table.
func (s *stack) countOrders(t *testing.T) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM orders").Scan(&n); err != nil {
		t.Fatalf("count orders: %v", err)
	}
	return n
}

// groupsSettled reports whether every partition's projector group has nothing pending and
// nothing left to deliver.
func (s *stack) groupsSettled(t *testing.T) bool {
	t.Helper()
	for p := range s.l.Keys().Partitions() {
		g, err := s.l.GroupInfo(context.Background(), p, projector.DefaultGroup)
		if err != nil {
			t.Fatalf("group info of partition %d: %v", p, err)
		}
		if !g.Exists || g.Pending != 0 || g.Lag != 0 {
			return false
		}
	}
	return true
}

// pendingOf returns the entries pending on consumer in the projector group, over every
// partition.
func (s *stack) pendingOf(t *testing.T, consumer string) int64 {
	t.Helper()
	var n int64
	for p := range s.l.Keys().Partitions() {
		cs, err := s.rdb.XInfoConsumers(context.Background(), s.l.Keys().Events(p), projector.DefaultGroup).Result()
		if err != nil {
			t.Fatalf("consumers of partition %d: %v", p, err)
		}
		for _, c := range cs {
			if c.Name == consumer {
				n += c.Pending
			}
		}
	}
	return n
}

// waitDrained waits until the orders table holds n rows and the projector group has settled
// on every partition.
func (s *stack) waitDrained(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.countOrders(t)
		if got == n && s.groupsSettled(t) {
			return
		}
		if got > n {
			t.Fatalf("orders table holds %d rows, want %d", got, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained within %s: orders table holds %d rows, want %d; groups settled: %v", timeout, got, n, s.groupsSettled(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ledgerOrders returns the ledger's order events by order ID.
func (s *stack) ledgerOrders(t *testing.T) map[string]ledger.Event {
	t.Helper()
	orders := map[string]ledger.Event{}
	for _, e := range testenv.Events(t, s.l) {
		if e.Malformed != nil {
			t.Errorf("malformed ledger entry %d/%s: %v", e.Partition, e.StreamID, e.Malformed)
			continue
		}
		if e.Type == ledger.EventOrder {
			orders[e.OrderID] = e
		}
	}
	return orders
}

// trimmed reports whether orderID's entry is at or before its partition's checkpoint: trimmed
// from the stream once folded into the checkpoint.
func (s *stack) trimmed(t *testing.T, orderID string) bool {
	t.Helper()
	p, sid, err := ledger.ParseOrderID(orderID)
	if err != nil {
		return false
	}
	ckpt, err := s.l.CheckpointID(context.Background(), p)
	if err != nil {
		t.Fatalf("checkpoint of partition %d: %v", p, err)
	}
	return ckpt != "" && ledger.CompareIDs(sid, ckpt) <= 0
}

// checkExactlyOnce checks the end state after a drain, for orders acked (the order IDs that
// clients were told about) and the stock put on sale per item:
//   - every acked order is in MySQL exactly once, confirmed; no other row is there;
//   - the ledger holds exactly the acked orders (but those trimmed into a checkpoint) and no
//     restock event;
//   - per item, the Redis stock plus the confirmed quantities is the stock put on sale, and
//     the items table holds the stock its one stock event set;
//   - the projector group has nothing pending and no lag on any partition;
//   - `flashsale audit` finds the books clean.
func (s *stack) checkExactlyOnce(t *testing.T, acked []string, initial map[string]int64) {
	t.Helper()
	want := make(map[string]bool, len(acked))
	for _, id := range acked {
		if want[id] {
			t.Errorf("order_id %s acknowledged twice", id)
		}
		want[id] = true
	}

	rows, err := s.db.Query("SELECT order_id, item_id, quantity, status FROM orders")
	if err != nil {
		t.Fatalf("read orders: %v", err)
	}
	defer rows.Close()
	seen := map[string]int{}
	confirmed := map[string]int64{}
	for rows.Next() {
		var id, item, status string
		var qty int64
		if err := rows.Scan(&id, &item, &qty, &status); err != nil {
			t.Fatalf("scan order: %v", err)
		}
		seen[id]++
		if !want[id] {
			t.Errorf("orders table holds %s (item %s, %s), which was never acknowledged", id, item, status)
		}
		if status != ledger.StatusConfirmed {
			t.Errorf("order %s: got status %q, want %q", id, status, ledger.StatusConfirmed)
			continue
		}
		confirmed[item] += qty
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read orders: %v", err)
	}
	missing := 0
	for id := range want {
		switch n := seen[id]; {
		case n == 0:
			if missing++; missing <= 10 {
				t.Errorf("acknowledged order %s is not in MySQL", id)
			}
		case n > 1:
			t.Errorf("order %s is in MySQL %d times, want once", id, n)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged orders are not in MySQL", missing, len(want))
	}

	orders := s.ledgerOrders(t)
	for id := range orders {
		if !want[id] {
			t.Errorf("ledger holds order %s, which was never acknowledged", id)
		}
	}
	for id := range want {
		if _, ok := orders[id]; !ok && !s.trimmed(t, id) {
			t.Errorf("acknowledged order %s is not in the ledger", id)
		}
	}
	for _, e := range testenv.Events(t, s.l) {
		if e.Type == ledger.EventRestock {
			t.Errorf("ledger holds a restock of order %s (%s)", e.OrderID, e.Reason)
		}
	}

	for item, put := range initial {
		it, err := s.l.Item(context.Background(), item)
		if err != nil {
			t.Fatalf("read item %s: %v", item, err)
		}
		if got := it.Stock + confirmed[item]; got != put {
			t.Errorf("item %s: stock %d + confirmed %d = %d, want %d put on sale", item, it.Stock, confirmed[item], got, put)
		}
		var projected int64
		if err := s.db.QueryRow("SELECT stock FROM items WHERE item_id = ?", item).Scan(&projected); err != nil {
			t.Errorf("item %s in MySQL: %v", item, err)
		} else if projected != put {
			t.Errorf("item %s in MySQL: got stock %d, want %d as its stock event set it", item, projected, put)
		}
	}

	for p := range s.l.Keys().Partitions() {
		g, err := s.l.GroupInfo(context.Background(), p, projector.DefaultGroup)
		if err != nil {
			t.Fatalf("group info of partition %d: %v", p, err)
		}
		if !g.Exists || g.Pending != 0 || g.Lag != 0 {
			t.Errorf("partition %d: got group %+v, want it to exist with pending 0 and lag 0", p, g)
		}
	}

	// The operator's own check must agree.
	runCmd(t, s.env(s.dsn), "audit")
}

// itemsPerPartition returns perPartition item IDs owned by each partition of l.
func itemsPerPartition(l *ledger.Ledger, perPartition int) []string {
	k := l.Keys()
	count := map[int]int{}
	var items []string
	for i := 0; len(items) < perPartition*k.Partitions(); i++ {
		item := fmt.Sprintf("item-%d", i)
		if p := k.Partition(item); count[p] < perPartition {
			count[p]++
			items = append(items, item)
		}
	}
	return items
}

// newHTTPClient returns a client that keeps enough connections for the tests' concurrency.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128},
	}
}

// apiReply is the JSON body of the purchase API's replies.
type apiReply struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
	OrderID string `json:"order_id"`
}

// purchaseHTTP posts one purchase and returns the status and decoded reply; err is a transport
// error (the reply, if any, never arrived).
func purchaseHTTP(c *http.Client, srv *server, req, user, item string, qty int64) (int, apiReply, error) {
	body, _ := json.Marshal(map[string]any{"request_id": req, "user_id": user, "item_id": item, "quantity": qty})
	resp, err := c.Post(srv.url("/api/purchase"), "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, apiReply{}, err
	}
	defer resp.Body.Close()
	var r apiReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return resp.StatusCode, r, fmt.Errorf("decode reply (status %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, r, nil
}

// getJSON gets path from srv and decodes the JSON reply into v (when not nil).
func getJSON(t *testing.T, c *http.Client, srv *server, path string, v any) int {
	t.Helper()
	resp, err := c.Get(srv.url(path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: decode reply (status %d): %v", path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode
}
