package projector_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

type env struct {
	l   *ledger.Ledger
	rdb *redis.Client
	db  *sql.DB
}

func newEnv(t testing.TB) env {
	t.Helper()
	_, rdb := testenv.StartRedis(t)
	l, err := ledger.Open(context.Background(), rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, db := testenv.MySQL(t)
	if _, err := projector.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return env{l: l, rdb: rdb, db: db}
}

// start runs a projector until the test ends.
func (e env) start(t testing.TB, cfg projector.Config) {
	t.Helper()
	t.Cleanup(e.run(t, cfg))
}

// run starts a projector and returns the func that stops it and waits for it.
func (e env) run(t testing.TB, cfg projector.Config) func() {
	t.Helper()
	if cfg.Consumer == "" {
		cfg.Consumer = "c1"
	}
	cfg.Block = 50 * time.Millisecond
	p, err := projector.New(e.l, projector.NewStore(e.db), cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

func (e env) setStock(t testing.TB, item string, n int64) {
	t.Helper()
	if _, err := e.l.SetStock(context.Background(), item, ledger.StockChange{Op: ledger.StockSet, Quantity: n}); err != nil {
		t.Fatal(err)
	}
}

func (e env) buy(t *testing.T, item, user, req string, qty int64) string {
	t.Helper()
	rc, err := e.l.Purchase(context.Background(), ledger.PurchaseRequest{RequestID: req, UserID: user, ItemID: item, Quantity: qty})
	if err != nil {
		t.Fatalf("purchase %s: %v", req, err)
	}
	return rc.OrderID
}

// waitSettled waits until every partition has nothing pending and nothing undelivered.
func (e env) waitSettled(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		busy := false
		for p := range e.l.Keys().Partitions() {
			g, err := e.l.GroupInfo(context.Background(), p, projector.DefaultGroup)
			if err != nil {
				t.Fatal(err)
			}
			if !g.Exists || g.Pending > 0 || g.Lag > 0 {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("projector did not settle in time")
}

func (e env) statuses(t *testing.T) map[string]string {
	t.Helper()
	rows, err := e.db.Query("SELECT order_id, status FROM orders")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			t.Fatal(err)
		}
		out[id] = status
	}
	return out
}

func (e env) stock(t *testing.T, item string) int64 {
	t.Helper()
	it, err := e.l.Item(context.Background(), item)
	if err != nil {
		t.Fatal(err)
	}
	return it.Stock
}

func TestProjectsEveryOrderOnce(t *testing.T) {
	e := newEnv(t)
	e.setStock(t, "a", 1000)
	e.setStock(t, "b", 1000)
	want := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 600 {
		wg.Go(func() {
			id := e.buy(t, []string{"a", "b"}[i%2], fmt.Sprintf("u%d", i), fmt.Sprintf("r%d", i), 1)
			mu.Lock()
			want[id] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	e.start(t, projector.Config{BatchSize: 64, Workers: 2})
	e.waitSettled(t)
	got := e.statuses(t)
	if len(got) != len(want) {
		t.Fatalf("got %d orders in MySQL, want %d", len(got), len(want))
	}
	for id := range want {
		if got[id] != ledger.StatusConfirmed {
			t.Errorf("order %s: got status %q, want confirmed", id, got[id])
		}
	}
	var stock int64
	if err := e.db.QueryRow("SELECT stock FROM items WHERE item_id = 'a'").Scan(&stock); err != nil || stock != 1000 {
		t.Fatalf("items.stock: got %d (%v), want 1000 (from the stock event)", stock, err)
	}
}

func TestConflictingRequestIsRestockedOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.setStock(t, "a", 10)
	// MySQL already holds an order for (a, r1) that the ledger no longer remembers, as after
	// the idempotency window expired.
	if _, err := e.db.Exec(`INSERT INTO orders (order_id, request_id, user_id, item_id, quantity, status, created_at, updated_at)
		VALUES ('0-1-0', 'r1', 'u0', 'a', 1, 'confirmed', NOW(), NOW())`); err != nil {
		t.Fatal(err)
	}
	limit := int64(5)
	if _, err := e.l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 0, Limit: &limit}); err != nil {
		t.Fatal(err)
	}
	conflict := e.buy(t, "a", "u1", "r1", 3)
	ok := e.buy(t, "a", "u1", "r2", 2)
	if got := e.stock(t, "a"); got != 5 {
		t.Fatalf("stock before projection: got %d, want 5", got)
	}
	e.start(t, projector.Config{})
	e.waitSettled(t)

	got := e.statuses(t)
	want := map[string]string{"0-1-0": "confirmed", conflict: "cancelled", ok: "confirmed"}
	for id, status := range want {
		if got[id] != status {
			t.Errorf("order %s: got %q, want %q", id, got[id], status)
		}
	}
	if s := e.stock(t, "a"); s != 8 {
		t.Fatalf("stock after restock: got %d, want 8", s)
	}
	// The user's count was released: u1 holds 2 of the limit of 5, so 3 more fit.
	e.buy(t, "a", "u1", "r3", 3)

	// Restocking the same order again changes nothing.
	ev, err := e.l.Order(ctx, conflict)
	if err != nil {
		t.Fatal(err)
	}
	done, err := e.l.Restock(ctx, ev, "again")
	if err != nil || done {
		t.Fatalf("second restock: got done=%v err=%v, want false, nil", done, err)
	}
	if s := e.stock(t, "a"); s != 5 {
		t.Fatalf("stock after second restock: got %d, want 5", s)
	}
	e.waitSettled(t)
	restocks := 0
	var fold int64
	for p := range e.l.Keys().Partitions() {
		evs, err := e.l.Range(ctx, p, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			switch {
			case ev.Type == ledger.EventRestock:
				restocks++
				fold += ev.Quantity
			case ev.Type == ledger.EventOrder:
				fold -= ev.Quantity
			case ev.Type == ledger.EventStock && ev.Op == ledger.StockSet:
				fold = ev.Quantity
			case ev.Type == ledger.EventStock:
				fold += ev.Quantity
			}
		}
	}
	if restocks != 1 || fold != 5 {
		t.Fatalf("got %d restock events and fold %d, want 1 and 5", restocks, fold)
	}
}

func TestMalformedEntriesDoNotBlock(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.setStock(t, "a", 10)
	p := e.l.Keys().Partition("a")
	stream := e.l.Keys().Events(p)
	// Garbage that cannot be restocked, and an order entry with a broken field that can.
	if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"junk", "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{
		"v", "1", "type", "order", "item_id", "a", "quantity", "2", "user_id", "u", "request_id", "", "ts", "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	after := e.buy(t, "a", "u", "r1", 1)
	e.start(t, projector.Config{})
	e.waitSettled(t)
	if got := e.statuses(t)[after]; got != ledger.StatusConfirmed {
		t.Fatalf("order behind the bad entries: got %q, want confirmed", got)
	}
	// The broken order's 2 units came back (10 - 1 + 2).
	if s := e.stock(t, "a"); s != 11 {
		t.Fatalf("stock: got %d, want 11", s)
	}
}

func TestClaimLoopTakesOverIdleEntries(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.setStock(t, "a", 100)
	var ids []string
	for i := range 20 {
		ids = append(ids, e.buy(t, "a", "u", fmt.Sprintf("r%d", i), 1))
	}
	p := e.l.Keys().Partition("a")
	if err := e.l.EnsureGroup(ctx, p, projector.DefaultGroup); err != nil {
		t.Fatal(err)
	}
	// "dead" reads everything and never acknowledges.
	evs, err := e.l.ReadGroup(ctx, p, projector.DefaultGroup, "dead", ">", 100, time.Millisecond)
	if err != nil || len(evs) != 21 {
		t.Fatalf("dead consumer read %d entries (%v), want 21", len(evs), err)
	}
	e.start(t, projector.Config{Consumer: "alive", MinIdle: 600 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, ClaimEvery: 100 * time.Millisecond})
	e.waitSettled(t)
	got := e.statuses(t)
	for _, id := range ids {
		if got[id] != ledger.StatusConfirmed {
			t.Errorf("order %s: got %q, want confirmed", id, got[id])
		}
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	e := newEnv(t)
	applied, err := projector.Migrate(context.Background(), e.db)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second migrate: applied %v (%v), want nothing", applied, err)
	}
}

// TestPoisonEntriesAreDeadNotBlocking: entries that can be neither projected nor restocked
// (an order naming an item of another partition, well-formed or not, and garbage) are
// acknowledged once, recorded as dead, counted, and shown by pending and audit; the orders
// behind them are confirmed.
func TestPoisonEntriesAreDeadNotBlocking(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.setStock(t, "a", 10)
	k := e.l.Keys()
	p := k.Partition("a")
	other := ""
	for i := 0; other == ""; i++ {
		if c := fmt.Sprintf("x%d", i); k.Partition(c) != p {
			other = c
		}
	}
	e.setStock(t, other, 10)
	poison := [][]string{
		{"v", "1", "type", "order", "item_id", other, "quantity", "2", "user_id", "u", "request_id", "forged", "ts", "1"},
		{"v", "1", "type", "order", "item_id", other, "quantity", "2", "user_id", "u", "request_id", "", "ts", "x"},
		{"junk", "1"},
	}
	dead := map[string]bool{}
	for _, values := range poison {
		id, err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: k.Events(p), Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		dead[id] = true
	}
	var after []string
	for i := range 3 {
		after = append(after, e.buy(t, "a", "u", fmt.Sprintf("r%d", i), 1))
	}

	reg := prometheus.NewRegistry()
	pr, err := projector.New(e.l, projector.NewStore(e.db), projector.Config{Consumer: "c1", Block: 50 * time.Millisecond},
		projector.NewMetrics(reg, nil, ""), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { pr.Run(pctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	deadline := time.Now().Add(15 * time.Second)
	for {
		g, err := e.l.GroupInfo(ctx, p, projector.DefaultGroup)
		if err != nil {
			t.Fatal(err)
		}
		if g.Exists && g.Pending == 0 && g.Lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition %d blocked: %+v", p, g)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := e.statuses(t)
	for _, id := range after {
		if st[id] != ledger.StatusConfirmed {
			t.Errorf("order %s behind the poison: got %q, want confirmed", id, st[id])
		}
	}
	if len(st) != len(after) {
		t.Errorf("MySQL holds %d orders, want only the %d real ones: %v", len(st), len(after), st)
	}
	if got, want := e.stock(t, other), int64(10); got != want {
		t.Errorf("stock of %s: got %d, want %d (nothing restocked for a forged order)", other, got, want)
	}
	if got := counterValue(t, reg, "flashsale_projector_skipped_total"); got != 3 {
		t.Errorf("flashsale_projector_skipped_total: got %v, want 3", got)
	}

	rep, err := e.l.Pending(ctx, projector.DefaultGroup, ledger.PendingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Dead) != 3 {
		t.Fatalf("pending report: got %d dead entries %+v, want 3", len(rep.Dead), rep.Dead)
	}
	for _, d := range rep.Dead {
		if !dead[d.StreamID] || d.Partition != p || d.Reason == "" {
			t.Errorf("dead entry %+v: want one of the poison entries of partition %d, with a reason", d, p)
		}
	}
	if rep.Dead[0].ItemID != other || rep.Dead[0].RequestID != "forged" || !strings.Contains(rep.Dead[0].Reason, "partition") {
		t.Errorf("first dead entry %+v: want the forged order of %s, said to be of another partition", rep.Dead[0], other)
	}
	audit, err := projector.Audit(ctx, e.l, projector.NewStore(e.db), projector.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range audit.Violations {
		if strings.Contains(v.What, "dead ledger entry") {
			n++
		} else {
			t.Errorf("unexpected violation %+v", v)
		}
	}
	if n != 3 {
		t.Errorf("audit: got %d dead-entry violations, want 3: %+v", n, audit.Violations)
	}
}

// counterValue returns the value of the counter registered on reg under name.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
