package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// On a Redis Cluster (3 masters, 3 replicas) the ledger spreads its partitions over the
// masters, and everything works across them: pipelined purchases with a SCRIPT FLUSH on every
// master mid-sale (each node answers NOSCRIPT for its own calls), a stock change through
// another client selling at once once it returned (the reopening lease), items, group stats, pending, and dead entries
// recorded and acknowledged in one MULTI.
func TestLedgerOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	ctx := context.Background()
	c := testenv.StartCluster(t)
	rdb := c.Client
	const parts = 16
	l, err := ledger.Open(ctx, rdb, ledger.Config{Partitions: parts, Pipeline: 16, Senders: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	other, err := ledger.Open(ctx, rdb, ledger.Config{}) // another process, direct calls
	if err != nil {
		t.Fatal(err)
	}
	if other.Keys().Partitions() != parts {
		t.Fatalf("second open: %d partitions, want the stored %d", other.Keys().Partitions(), parts)
	}

	// One item per partition; the partitions land on every master.
	items := make([]string, parts)
	masters := map[string]bool{}
	for i := 0; i < 10000 && countSet(items) < parts; i++ {
		it := fmt.Sprintf("i%d", i)
		if p := l.Keys().Partition(it); items[p] == "" {
			items[p] = it
		}
	}
	for p := range parts {
		masters[c.MasterOf(t, l.Keys().Events(p)).Addr] = true
	}
	if len(masters) != 3 {
		t.Fatalf("%d partitions on %d masters, want all 3", parts, len(masters))
	}
	const stock, buyers = 20, 60
	for _, it := range items {
		setStock(t, l, it, stock)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[string]int{}
	for i := range buyers * parts {
		wg.Go(func() {
			if i == buyers*parts/2 {
				err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.ScriptFlush(ctx).Err() })
				if err != nil {
					t.Errorf("script flush: %v", err)
				}
			}
			it := items[i%parts]
			_, err := buy(l, it, fmt.Sprintf("u%d", i), fmt.Sprintf("r%d", i), 1)
			switch {
			case err == nil:
				mu.Lock()
				won[it]++
				mu.Unlock()
			case !errors.Is(err, ledger.ErrSoldOut):
				t.Errorf("purchase %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for _, it := range items {
		if won[it] != stock {
			t.Fatalf("item %s: %d sold, want %d", it, won[it], stock)
		}
	}
	orders := 0
	for _, e := range testenv.Events(t, l) {
		if e.Type == ledger.EventOrder {
			orders++
		}
	}
	if orders != stock*parts {
		t.Fatalf("%d orders in the ledger, want %d", orders, stock*parts)
	}
	listed, err := l.Items(ctx)
	if err != nil || len(listed) != parts {
		t.Fatalf("items: got %v (%v), want %d", listed, err, parts)
	}

	// Stock added through another client, with l's winner tail running on every master: once
	// the change returned, the unit sells through l at the first try.
	wctx, cancel := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	wwg.Go(func() { l.TailWinners(wctx, nil) })
	t.Cleanup(func() { cancel(); wwg.Wait() })
	last := items[parts-1]
	if _, err := buy(l, last, "late", "late-1", 1); !errors.Is(err, ledger.ErrSoldOut) {
		t.Fatalf("sold-out item: got %v, want ErrSoldOut", err)
	}
	if _, err := other.SetStock(ctx, last, ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := buy(l, last, "late", "late-2", 1); err != nil {
		t.Fatalf("after the stock add returned: got %v, want success", err)
	}

	// Consumer groups, stats and pending on every partition; a dead entry in one MULTI.
	for p := range parts {
		if err := l.EnsureGroup(ctx, p, "g"); err != nil {
			t.Fatal(err)
		}
	}
	p := l.Keys().Partition(items[0])
	// Five entries: an entry of the purchase script holds the orders of one call.
	evs, err := l.ReadGroup(ctx, p, "g", "c1", ">", 5, time.Millisecond)
	entries := 0
	for range ledger.ByEntry(evs) {
		entries++
	}
	if err != nil || entries != 5 {
		t.Fatalf("read group: %d events in %d entries, %v", len(evs), entries, err)
	}
	stats, err := l.GroupStats(ctx, "g")
	if err != nil || len(stats) != parts {
		t.Fatalf("group stats: %v, %v", stats, err)
	}
	for _, st := range stats {
		want := int64(0)
		if st.Partition == p {
			want = 5
		}
		if !st.Exists || st.Pending != want {
			t.Fatalf("partition %d: %+v, want %d pending", st.Partition, st, want)
		}
	}
	rep, err := l.Pending(ctx, "g", ledger.PendingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Entries) != len(evs) || len(rep.Partitions) != parts {
		t.Fatalf("pending: %d lines over %d partitions, want %d over %d", len(rep.Entries), len(rep.Partitions), len(evs), parts)
	}
	if err := l.MarkDead(ctx, evs[0], "g", "test"); err != nil {
		t.Fatalf("mark dead: %v", err)
	}
	dead, err := l.Dead(ctx, "")
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead: %v, %v", dead, err)
	}
	if st, err := l.GroupInfo(ctx, p, "g"); err != nil || st.Pending != 4 {
		t.Fatalf("after mark dead: %+v, %v, want 4 pending", st, err)
	}
}

// With MinReplicas on a cluster, each pipeline goes to its keys' master and ends with one WAIT
// there: purchases on every master are confirmed by their replicas; with one master's replica
// hung, that master's purchases answer ErrNotReplicated and the others' still succeed.
func TestMinReplicasOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	ctx := context.Background()
	c := testenv.StartCluster(t)
	for _, cfg := range []ledger.Config{
		{MinReplicas: 1, ReplicaTimeout: time.Second},
		{MinReplicas: 1, ReplicaTimeout: time.Second, Pipeline: 8, Senders: 2},
	} {
		prefix := fmt.Sprintf("p%d", cfg.Pipeline)
		cfg.Prefix = prefix
		l, err := ledger.Open(ctx, c.Client, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		parts := l.Keys().Partitions()
		items := make([]string, parts)
		for i := 0; countSet(items) < parts; i++ {
			if it := fmt.Sprintf("i%d", i); items[l.Keys().Partition(it)] == "" {
				items[l.Keys().Partition(it)] = it
			}
		}
		for _, it := range items {
			setStock(t, l, it, 100)
		}
		buyAll := func(round string) map[string]error {
			errs := map[string]error{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, it := range items {
				wg.Go(func() {
					_, err := buy(l, it, "u-"+round, "r-"+round, 1)
					mu.Lock()
					errs[it] = err
					mu.Unlock()
				})
			}
			wg.Wait()
			return errs
		}
		for it, err := range buyAll("1") {
			if err != nil {
				t.Fatalf("%s: %v with every replica up", it, err)
			}
		}
		hungMaster := c.MasterOf(t, l.Keys().Events(0))
		replica := c.ReplicaOf(t, hungMaster)
		replica.Pause()
		errs := buyAll("2")
		replica.Resume()
		for it, err := range errs {
			onHung := c.MasterOf(t, l.Keys().Stock(it)) == hungMaster
			switch {
			case onHung && !errors.Is(err, ledger.ErrNotReplicated):
				t.Errorf("pipeline %d: %s on the master whose replica hangs: got %v, want ErrNotReplicated", cfg.Pipeline, it, err)
			case !onHung && err != nil:
				t.Errorf("pipeline %d: %s on another master: %v", cfg.Pipeline, it, err)
			}
		}
	}
}

func countSet(s []string) int {
	n := 0
	for _, v := range s {
		if v != "" {
			n++
		}
	}
	return n
}

// A partition's slot moved to another master while ledgers with the old slot map run (a
// reshard): purchases follow the MOVED redirection, pipelined or not; with MinReplicas (node
// clients) the first call may answer ErrUnavailable, and the retry with the same request_id
// reaches the new master. No order is lost or placed twice.
func TestSlotMovedDuringSale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	ctx := context.Background()
	c := testenv.StartCluster(t)
	cfgs := []ledger.Config{
		{},
		{Pipeline: 8, Senders: 2},
		{MinReplicas: 1, ReplicaTimeout: time.Second, Pipeline: 8, Senders: 2},
		{MinReplicas: 1, ReplicaTimeout: time.Second},
	}
	var ls []*ledger.Ledger
	for _, cfg := range cfgs {
		l, err := ledger.Open(ctx, c.Client, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		ls = append(ls, l)
	}
	item := "moving"
	p := ls[0].Keys().Partition(item)
	setStock(t, ls[0], item, 1000)
	for i, l := range ls {
		if _, err := buy(l, item, "u", fmt.Sprintf("before-%d", i), 1); err != nil {
			t.Fatalf("ledger %d before the move: %v", i, err)
		}
	}

	from := c.MasterOf(t, ls[0].Keys().Events(p))
	var to *testenv.Redis
	for _, n := range c.Nodes {
		if n != from && isMaster(t, n) {
			to = n
			break
		}
	}
	if to == nil {
		t.Fatal("no other master")
	}
	moveSlot(t, c, from, to, ls[0].Keys().Events(p))
	fc := redis.NewClient(&redis.Options{Addr: from.Addr})
	defer fc.Close()
	if err := fc.Get(ctx, ls[0].Keys().Stock(item)).Err(); !redis.HasErrorPrefix(err, "MOVED") {
		t.Fatalf("old master: got %v, want MOVED", err)
	}

	for i, l := range ls {
		req := fmt.Sprintf("after-%d", i)
		var err error
		for range 30 { // as a client retries a 503, after a pause
			if _, err = buy(l, item, "u", req, 1); err == nil || !errors.Is(err, ledger.ErrUnavailable) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("ledger %d after the move: %v", i, err)
		}
	}
	orders := 0
	for _, e := range testenv.Events(t, ls[0]) {
		if e.Type == ledger.EventOrder {
			orders++
		}
	}
	if orders != 2*len(ls) {
		t.Fatalf("%d orders, want %d", orders, 2*len(ls))
	}
}

func isMaster(t *testing.T, n *testenv.Redis) bool {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: n.Addr})
	defer rc.Close()
	info, err := rc.Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(info, "role:master")
}

// moveSlot moves key's slot from one master to another, keys and all, as redis-cli --cluster
// reshard does.
func moveSlot(t *testing.T, c *testenv.RedisCluster, from, to *testenv.Redis, key string) {
	t.Helper()
	ctx := context.Background()
	fc := redis.NewClient(&redis.Options{Addr: from.Addr})
	defer fc.Close()
	tc := redis.NewClient(&redis.Options{Addr: to.Addr})
	defer tc.Close()
	slot, err := fc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	fromID, err := fc.Do(ctx, "cluster", "myid").Text()
	if err != nil {
		t.Fatal(err)
	}
	toID, err := tc.Do(ctx, "cluster", "myid").Text()
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tc.Do(ctx, "cluster", "setslot", slot, "importing", fromID).Err())
	must(fc.Do(ctx, "cluster", "setslot", slot, "migrating", toID).Err())
	host, port, _ := strings.Cut(to.Addr, ":")
	for {
		keys, err := fc.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		must(err)
		if len(keys) == 0 {
			break
		}
		args := []any{"migrate", host, port, "", 0, 5000, "keys"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(fc.Do(ctx, args...).Err())
	}
	for _, n := range c.Nodes {
		if isMaster(t, n) {
			nc := redis.NewClient(&redis.Options{Addr: n.Addr})
			must(nc.Do(ctx, "cluster", "setslot", slot, "node", toID).Err())
			nc.Close()
		}
	}
}
