package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// commandCounter counts (count is a testenv.Hook) the commands a ledger sends, but for the
// winner tail's own reads (XREAD, XINFO, XRANGE), which purchases never send, and the
// setup of new connections (HELLO, CLIENT).
type commandCounter struct {
	n atomic.Int64
}

func (c *commandCounter) count(cmd redis.Cmder) {
	switch cmd.Name() {
	case "xread", "xinfo", "xrange", "hello", "client", "cluster": // the tail's reads, connection and cluster setup
	default:
		c.n.Add(1)
	}
}

// process is one serving process: a ledger on a client of its own (with a command counter)
// and, with tail, its winner tail, all stopped by t.Cleanup or stop.
type process struct {
	l    *ledger.Ledger
	cmds *commandCounter
	stop func()
}

func startProcess(t testing.TB, addr string, cfg ledger.Config, tail bool) *process {
	t.Helper()
	return startProcessOn(t, redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 2 * time.Second}), cfg, tail)
}

// startProcessOn is startProcess on a client of the caller's, which it closes.
func startProcessOn(t testing.TB, rdb redis.UniversalClient, cfg ledger.Config, tail bool) *process {
	t.Helper()
	c := &commandCounter{}
	rdb.AddHook(testenv.Hook(c.count))
	l, err := ledger.Open(context.Background(), rdb, cfg)
	if err != nil {
		t.Fatalf("open ledger: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if tail {
		wg.Go(func() { l.TailWinners(ctx, nil) })
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			rdb.Close() // ends the tail's blocked XREAD at once
			wg.Wait()
			l.Close()
		})
	}
	t.Cleanup(stop)
	return &process{l: l, cmds: c, stop: stop}
}

// waitLocal buys item as new requests until one is answered from the winner index.
func waitLocal(t testing.TB, pr *process, item string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		before := pr.l.WinnerStats().LocalAnswers
		_, err := buy(pr.l, item, "waiter", fmt.Sprintf("wait-%d", i), 1)
		if !errors.Is(err, ledger.ErrSoldOut) {
			t.Fatalf("waiting for the local answer: got %v, want ErrSoldOut", err)
		}
		if pr.l.WinnerStats().LocalAnswers > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no local answer within 10s: %+v", pr.l.WinnerStats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sellOut sells item's n units as requests w0..w(n-1) of users v0.. through pr, then has the
// script answer sold out once; it returns the order IDs by request_id.
func sellOut(t testing.TB, pr *process, item string, n int) map[string]string {
	t.Helper()
	if _, err := pr.l.SetStock(context.Background(), item, ledger.StockChange{Op: ledger.StockSet, Quantity: int64(n)}); err != nil {
		t.Fatal(err)
	}
	orders := map[string]string{}
	for i := range n {
		rc, err := buy(pr.l, item, fmt.Sprintf("v%d", i), fmt.Sprintf("w%d", i), 1)
		if err != nil {
			t.Fatalf("purchase %d: %v", i, err)
		}
		orders[fmt.Sprintf("w%d", i)] = rc.OrderID
	}
	if _, err := buy(pr.l, item, "late", "late", 1); !errors.Is(err, ledger.ErrSoldOut) {
		t.Fatalf("after the last unit: got %v, want ErrSoldOut", err)
	}
	return orders
}

// checkAnswers asks pr for every kind of answer of a sold-out item and checks each: a winner's
// retry gets its order, its request_id from another user is taken, a new request is sold out.
func checkAnswers(t testing.TB, pr *process, item string, orders map[string]string) {
	t.Helper()
	for req, id := range orders {
		user := "v" + req[1:]
		var dup *ledger.DuplicateError
		if _, err := buy(pr.l, item, user, req, 1); !errors.As(err, &dup) || dup.OrderID != id {
			t.Fatalf("retry of winner %s: got %v, want duplicate of %s", req, err, id)
		}
		if _, err := buy(pr.l, item, "intruder", req, 1); !errors.Is(err, ledger.ErrRequestIDTaken) || errors.As(err, &dup) {
			t.Fatalf("another user with winner %s's request_id: got %v, want ErrRequestIDTaken", req, err)
		}
	}
	for i := range 5 {
		if _, err := buy(pr.l, item, "loser", fmt.Sprintf("lost-%d", i), 1); !errors.Is(err, ledger.ErrSoldOut) {
			t.Fatalf("new request: got %v, want ErrSoldOut", err)
		}
	}
}

// answeredLocally runs checkAnswers and fails unless no purchase command reached Redis.
func answeredLocally(t testing.TB, pr *process, item string, orders map[string]string) {
	t.Helper()
	before, local := pr.cmds.n.Load(), pr.l.WinnerStats().LocalAnswers
	checkAnswers(t, pr, item, orders)
	if n := pr.cmds.n.Load() - before; n != 0 {
		t.Fatalf("%d Redis commands for answers of a sold-out item, want 0", n)
	}
	if want := int64(2*len(orders) + 5); pr.l.WinnerStats().LocalAnswers-local != want {
		t.Fatalf("local answers: %d, want %d", pr.l.WinnerStats().LocalAnswers-local, want)
	}
}

// answeredByRedis runs checkAnswers and fails unless every answer came from Redis.
func answeredByRedis(t testing.TB, pr *process, item string, orders map[string]string) {
	t.Helper()
	before, local := pr.cmds.n.Load(), pr.l.WinnerStats().LocalAnswers
	checkAnswers(t, pr, item, orders)
	if n := pr.cmds.n.Load() - before; n < int64(2*len(orders)+5) {
		t.Fatalf("%d Redis commands, want one per answer at least", n)
	}
	if pr.l.WinnerStats().LocalAnswers != local {
		t.Fatal("answered from the winner index, want Redis")
	}
}

func TestWinnerIndexAnswersWithoutRedis(t *testing.T) {
	for _, cfg := range []ledger.Config{{}, {Pipeline: 8, Senders: 2}} {
		t.Run(fmt.Sprintf("pipeline=%d", cfg.Pipeline), func(t *testing.T) {
			srv, _ := testenv.StartRedis(t)
			pr := startProcess(t, srv.Addr, cfg, true)
			orders := sellOut(t, pr, "a", 3)
			waitLocal(t, pr, "a")
			answeredLocally(t, pr, "a", orders)
		})
	}
}

func TestWinnerIndexBeforeTheTailCatchesUp(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	c := &commandCounter{}
	rdb.AddHook(testenv.Hook(c.count))
	t.Cleanup(func() { rdb.Close() })
	l, err := ledger.Open(context.Background(), rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// The tail can be held before its next read: it then stays synced, and leased for up to
	// the lease, but behind the ledger.
	var hold atomic.Bool
	held, release := make(chan struct{}, 1), make(chan struct{})
	ledger.SetBeforeTailRead(l, func() {
		if hold.Load() {
			held <- struct{}{}
			<-release
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.TailWinners(ctx, nil); close(done) }()
	var releaseOnce sync.Once
	unhold := func() { hold.Store(false); releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(func() { cancel(); unhold(); rdb.Close(); <-done })
	pr := &process{l: l, cmds: c}

	setStock(t, l, "warmup", 0)
	waitUntil(t, func() bool { return l.WinnerStats().Synced == l.Keys().Partitions() })
	hold.Store(true)
	<-held
	orders := sellOut(t, pr, "a", 2) // sold out as of a position the tail has not read
	answeredByRedis(t, pr, "a", orders)
	unhold()
	waitLocal(t, pr, "a")
	answeredLocally(t, pr, "a", orders)
}

// On Redis Cluster the partitions are in different slots, which one XREAD cannot name: each
// partition is tailed on its own, and winners placed through one process are answered by
// another without a command, on every master.
func TestWinnerIndexOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := testenv.StartCluster(t)
	open := func() redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 8, ReadTimeout: 2 * time.Second})
	}
	a := startProcessOn(t, open(), ledger.Config{Partitions: 16}, true)
	b := startProcessOn(t, open(), ledger.Config{Partitions: 16}, true)
	masters := map[string]string{} // master address -> an item of a partition it holds
	for i := 0; i < 1000 && len(masters) < 3; i++ {
		item := fmt.Sprintf("c%d", i)
		m := c.MasterOf(t, a.l.Keys().Events(a.l.Keys().Partition(item))).Addr
		if masters[m] == "" {
			masters[m] = item
		}
	}
	if len(masters) != 3 {
		t.Fatalf("items on %d masters, want 3", len(masters))
	}
	for _, item := range masters {
		orders := sellOut(t, a, item, 3)
		waitLocal(t, b, item)
		answeredLocally(t, b, item, orders)
	}
}

func TestWinnerIndexAcrossProcesses(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	a := startProcess(t, srv.Addr, ledger.Config{}, true)
	b := startProcess(t, srv.Addr, ledger.Config{}, true)
	orders := sellOut(t, a, "a", 3) // every order placed through a
	waitLocal(t, b, "a")
	answeredLocally(t, b, "a", orders)

	// A process started now (a restart of b) builds the index from the ledger.
	b.stop()
	c := startProcess(t, srv.Addr, ledger.Config{}, true)
	waitLocal(t, c, "a")
	answeredLocally(t, c, "a", orders)
}

func TestWinnerIndexSurvivesRedisRestart(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	a := startProcess(t, srv.Addr, ledger.Config{}, true)
	orders := sellOut(t, a, "a", 2)
	waitLocal(t, a, "a")

	srv.Kill()
	// The tail fails at once (before its lease of 1s runs out): nothing is answered from
	// memory while Redis is away.
	deadline := time.Now().Add(time.Second)
	for {
		_, err := buy(a.l, "a", "v0", "w0", 1)
		if errors.Is(err, ledger.ErrUnavailable) {
			break
		}
		var dup *ledger.DuplicateError
		if !errors.As(err, &dup) || dup.OrderID != orders["w0"] || time.Now().After(deadline) {
			t.Fatalf("winner's retry while Redis is down: got %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitLocal(t, a, "a")
	answeredLocally(t, a, "a", orders)

	// The tail goes on after the restart: a unit added and sold through another process is
	// a winner a then knows.
	b := startProcess(t, srv.Addr, ledger.Config{}, false)
	if _, err := b.l.SetStock(context.Background(), "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	rc, err := buy(b.l, "a", "v7", "w7", 1)
	if err != nil {
		t.Fatal(err)
	}
	orders["w7"] = rc.OrderID
	waitUntil(t, func() bool {
		_, err := buy(a.l, "a", "late2", "late2", 1)
		return errors.Is(err, ledger.ErrSoldOut)
	})
	waitLocal(t, a, "a")
	answeredLocally(t, a, "a", orders)
}

func waitUntil(t testing.TB, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWinnerIndexStockChangeEndsSoldOut(t *testing.T) {
	t.Run("stock add", func(t *testing.T) {
		srv, _ := testenv.StartRedis(t)
		a := startProcess(t, srv.Addr, ledger.Config{}, true)
		b := startProcess(t, srv.Addr, ledger.Config{}, false)
		sellOut(t, a, "a", 1)
		waitLocal(t, a, "a")
		start := time.Now()
		if _, err := b.l.SetStock(context.Background(), "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < time.Second {
			t.Fatalf("the stock add returned after %v, want after the lease (1s)", took)
		}
		// Returned after the reopening: a, which answered sold out from memory, sells it now.
		if _, err := buy(a.l, "a", "next", "next", 1); err != nil {
			t.Fatalf("after the stock add returned: got %v, want success", err)
		}
	})
	t.Run("cancelled and expired reservations", func(t *testing.T) {
		srv, _ := testenv.StartRedis(t)
		// No announcements: the tail's reading of the cancelled and expired events ends the
		// local sold-out answer.
		a := startProcess(t, srv.Addr, ledger.Config{}, true)
		ctx := context.Background()
		within := 50 * time.Millisecond
		if _, err := a.l.SetStock(ctx, "a", ledger.StockChange{Op: ledger.StockSet, Quantity: 2, PayWithin: &within}); err != nil {
			t.Fatal(err)
		}
		r0, err := buy(a.l, "a", "v0", "w0", 1)
		if err != nil {
			t.Fatal(err)
		}
		r1, err := buy(a.l, "a", "v1", "w1", 1)
		if err != nil {
			t.Fatal(err)
		}
		for i, release := range []func() error{
			func() error { _, err := a.l.Cancel(ctx, r0.OrderID, "v0"); return err },
			func() error {
				time.Sleep(2 * within) // past pay_by
				done, err := a.l.Expire(ctx, r1.OrderID)
				if err == nil && !done {
					err = errors.New("not expired")
				}
				return err
			},
		} {
			if _, err := buy(a.l, "a", "late", fmt.Sprintf("late-%d", i), 1); !errors.Is(err, ledger.ErrSoldOut) {
				t.Fatalf("before release %d: got %v, want ErrSoldOut", i, err)
			}
			waitLocal(t, a, "a")
			if err := release(); err != nil {
				t.Fatalf("release %d: %v", i, err)
			}
			waitUntil(t, func() bool {
				_, err := buy(a.l, "a", fmt.Sprintf("next-%d", i), fmt.Sprintf("next-%d", i), 1)
				if err != nil && !errors.Is(err, ledger.ErrSoldOut) {
					t.Fatalf("after release %d: %v", i, err)
				}
				return err == nil
			})
		}
	})
	t.Run("restock", func(t *testing.T) {
		srv, _ := testenv.StartRedis(t)
		a := startProcess(t, srv.Addr, ledger.Config{}, true)
		orders := sellOut(t, a, "a", 1)
		waitLocal(t, a, "a")
		e, err := a.l.Order(context.Background(), orders["w0"])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.l.Restock(context.Background(), e, "test"); err != nil {
			t.Fatal(err)
		}
		// The unit is on sale again; the cancelled order's request_id still answers it, as
		// its idempotency key does.
		waitUntil(t, func() bool {
			_, err := buy(a.l, "a", "next", "next", 1)
			return err == nil
		})
		var dup *ledger.DuplicateError
		if _, err := buy(a.l, "a", "v0", "w0", 1); !errors.As(err, &dup) || dup.OrderID != orders["w0"] {
			t.Fatalf("retry of the cancelled order: got %v", err)
		}
	})
}

func TestWinnerIndexCap(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	a := startProcess(t, srv.Addr, ledger.Config{WinnerIndexMax: 2}, true)
	big := sellOut(t, a, "big", 3) // one order more than the cap: the item keeps the Redis path
	small := sellOut(t, a, "small", 2)
	waitLocal(t, a, "small")
	answeredLocally(t, a, "small", small)
	answeredByRedis(t, a, "big", big)
	if st := a.l.WinnerStats(); st.Orders != 2 || st.Max != 2 {
		t.Fatalf("stats %+v, want 2 orders of 2", st)
	}
}

// startHeld is startProcess with a tail that can be held before its next read: hold returns
// once the tail waits there, release lets it go on.
func startHeld(t testing.TB, addr string, cfg ledger.Config) (pr *process, hold, release func()) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 2 * time.Second})
	c := &commandCounter{}
	rdb.AddHook(testenv.Hook(c.count))
	l, err := ledger.Open(context.Background(), rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		holding bool
		gate    chan struct{}
	)
	held := make(chan struct{}, 1)
	ledger.SetBeforeTailRead(l, func() {
		mu.Lock()
		g := gate
		mu.Unlock()
		if g != nil {
			held <- struct{}{}
			<-g
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.TailWinners(ctx, nil); close(done) }()
	release = func() {
		mu.Lock()
		defer mu.Unlock()
		if holding {
			close(gate)
			gate, holding = nil, false
		}
	}
	hold = func() {
		mu.Lock()
		gate, holding = make(chan struct{}), true
		mu.Unlock()
		<-held
	}
	t.Cleanup(func() { cancel(); release(); rdb.Close(); <-done; l.Close() })
	return &process{l: l, cmds: c}, hold, release
}

// streamTop returns the last ID of item's partition stream.
func streamTop(t testing.TB, rdb *redis.Client, l *ledger.Ledger, item string) string {
	t.Helper()
	msgs, err := rdb.XRevRangeN(context.Background(), l.Keys().Events(l.Keys().Partition(item)), "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		t.Fatalf("stream top: %v", err)
	}
	return msgs[0].ID
}

// The ledger's retention trims the streams (XTRIM MINID). An item is answered locally only
// when the tail has read its whole history: a tail that began before the trim keeps answering
// every item; one that began after it answers the items whose creation it read, and the others
// through Redis; entries trimmed before the tail read them make it rebuild the partition.
func TestWinnerIndexTrimmedHistory(t *testing.T) {
	srv, rdb := testenv.StartRedis(t)
	ctx := context.Background()
	w := startProcess(t, srv.Addr, ledger.Config{}, false) // places the orders
	early, hold, release := startHeld(t, srv.Addr, ledger.Config{})
	k := w.l.Keys()
	stream := k.Events(k.Partition("old"))
	item := ""
	for i := 0; item == ""; i++ {
		if c := fmt.Sprintf("new%d", i); k.Partition(c) == k.Partition("old") {
			item = c
		}
	}
	// old: created, one order, then item is created (the trim point), then old's two other
	// units and item's two are sold.
	old := map[string]string{}
	setStock(t, w.l, "old", 3)
	order := func(it string, orders map[string]string, i int) {
		t.Helper()
		rc, err := buy(w.l, it, fmt.Sprintf("v%d", i), fmt.Sprintf("w%d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		orders[fmt.Sprintf("w%d", i)] = rc.OrderID
	}
	order("old", old, 0)
	setStock(t, w.l, item, 2)
	cut := streamTop(t, rdb, w.l, item)
	fresh := map[string]string{}
	order("old", old, 1)
	order("old", old, 2)
	order(item, fresh, 0)
	order(item, fresh, 1)
	waitLocal(t, early, "old")
	waitLocal(t, early, item)
	// lapse holds early's tail past its lease: it checks for deleted entries before it renews
	// the lease (as it does every 10s while leased).
	lapse := func() {
		t.Helper()
		hold()
		time.Sleep(1100 * time.Millisecond)
		if st := early.l.WinnerStats(); st.Leased != 0 {
			t.Fatalf("held past the lease: %d partitions leased, want 0", st.Leased)
		}
		release()
		waitUntil(t, func() bool { return early.l.WinnerStats().Leased == k.Partitions() })
	}
	lapse() // a check after early read everything: the trim below is of entries it had read

	if n, err := rdb.XTrimMinID(ctx, stream, cut).Result(); err != nil || n != 2 {
		t.Fatalf("trim: %d entries (%v), want old's creation and first order", n, err)
	}
	late := startProcess(t, srv.Addr, ledger.Config{}, true)
	if _, err := buy(late.l, "old", "x", "x", 1); !errors.Is(err, ledger.ErrSoldOut) {
		t.Fatalf("got %v, want ErrSoldOut", err) // late knows old sold out as of the top
	}
	waitLocal(t, late, item)
	answeredLocally(t, late, item, fresh)
	answeredByRedis(t, late, "old", old) // w0's order is no longer in the stream
	// early read everything before the trim, and goes on answering both items, also after its
	// next check for deleted entries.
	lapse()
	answeredLocally(t, early, "old", old)
	answeredLocally(t, early, item, fresh)

	// Entries trimmed before early's tail read them: a unit added to item and sold to w9,
	// then a new item (the new trim point), trimmed while early's tail is held.
	hold()
	if _, err := w.l.SetStock(ctx, item, ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	order(item, fresh, 9)
	other := ""
	for i := 0; other == ""; i++ {
		if c := fmt.Sprintf("other%d", i); k.Partition(c) == k.Partition("old") {
			other = c
		}
	}
	setStock(t, w.l, other, 1)
	if n, err := rdb.XTrimMinID(ctx, stream, streamTop(t, rdb, w.l, other)).Result(); err != nil || n == 0 {
		t.Fatalf("trim: %d entries (%v)", n, err)
	}
	release()
	// w9 won after early last read the stream: it gets its order, never "sold out".
	var dup *ledger.DuplicateError
	if _, err := buy(early.l, item, "v9", "w9", 1); !errors.As(err, &dup) || dup.OrderID != fresh["w9"] {
		t.Fatalf("retry of w9 after the unread trim: got %v, want duplicate of %s", err, fresh["w9"])
	}
	waitUntil(t, func() bool { return early.l.WinnerStats().Synced == k.Partitions() })
	answeredByRedis(t, early, item, fresh) // rebuilt: item's creation is no longer in the stream
}

// TestWinnerIndexBytesPerOrder measures the heap the index takes per order, with request and
// user IDs of 16 bytes, and logs it (go test -v -run BytesPerOrder ./ledger).
func TestWinnerIndexBytesPerOrder(t *testing.T) {
	const n = 100_000
	srv, rdb := testenv.StartRedisWith(t, "--appendfsync", "no")
	ctx := context.Background()
	keys := ledger.NewKeys(ledger.DefaultPrefix, ledger.DefaultPartitions)
	stream := keys.Events(keys.Partition("m"))
	if _, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{
		"v", "1", "type", "stock", "item_id", "m", "op", "set", "quantity", strconv.Itoa(n), "stock", strconv.Itoa(n),
		"limit", "0", "start_ms", "0", "end_ms", "0"}}).Result(); err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for i := 0; i < n; i += 1000 {
		pipe := rdb.Pipeline()
		for j := i; j < i+1000; j++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{
				"v", "1", "type", "order", "request_id", fmt.Sprintf("req-%012d", j), "user_id", fmt.Sprintf("usr-%012d", j),
				"item_id", "m", "quantity", "1", "ts", ts}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pr := startProcess(t, srv.Addr, ledger.Config{}, false)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() { pr.l.TailWinners(tctx, nil); close(done) }()
	waitUntil(t, func() bool { return pr.l.WinnerStats().Orders == n })
	took := time.Since(start)
	cancel()
	<-done
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	t.Logf("winner index: %.0f bytes per order (%d orders, 16-byte request and user IDs), built in %v", per, n, took.Round(time.Millisecond))
	if per > 400 {
		t.Fatalf("%.0f bytes per order, want at most 400", per)
	}
	runtime.KeepAlive(pr)
}

// BenchmarkLocalAnswer measures purchases of a sold-out item answered from the winner index
// (no Redis command), from 64 goroutines per core:
//
//	go test -run '^$' -bench LocalAnswer -benchmem ./ledger
func BenchmarkLocalAnswer(b *testing.B) {
	srv, _ := testenv.StartRedis(b)
	pr := startProcess(b, srv.Addr, ledger.Config{}, true)
	orders := sellOut(b, pr, "hot", 10)
	waitLocal(b, pr, "hot")
	for _, kind := range []string{"new request", "winner retry"} {
		b.Run(kind, func(b *testing.B) {
			before := pr.cmds.n.Load()
			var n atomic.Int64
			b.SetParallelism(64)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					req, user := "r"+strconv.FormatInt(i, 10), "u"+strconv.FormatInt(i%1000, 10)
					if kind == "winner retry" {
						req, user = "w"+strconv.FormatInt(i%10, 10), "v"+strconv.FormatInt(i%10, 10)
					}
					_, err := pr.l.Purchase(context.Background(), ledger.PurchaseRequest{RequestID: req, UserID: user, ItemID: "hot", Quantity: 1})
					if err == nil {
						b.Error("purchase of a sold-out item succeeded")
						return
					}
				}
			})
			b.StopTimer()
			if c := pr.cmds.n.Load() - before; c != 0 {
				b.Fatalf("%d Redis commands", c)
			}
			_ = orders
		})
	}
}

// A new winner's retry reaching a process whose tail has not yet read the stock change that
// made the sale possible, nor the order, gets its order (409), never "sold out": a local
// "sold out" waits for the tail to reach the stream's top as read after the request arrived.
func TestWinnerIndexNewWinnerBeforeTheTailSeesIt(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	// b: no announcements and no sold-out TTL, so only its tail tells it of stock changes.
	b, err := ledger.Open(context.Background(), rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var hold atomic.Bool
	held, release := make(chan struct{}, 1), make(chan struct{})
	ledger.SetBeforeTailRead(b, func() {
		if hold.Load() {
			held <- struct{}{}
			<-release
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.TailWinners(ctx, nil); close(done) }()
	var releaseOnce sync.Once
	unhold := func() { hold.Store(false); releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(func() { cancel(); unhold(); rdb.Close(); <-done })
	pb := &process{l: b, cmds: &commandCounter{}}
	a := startProcess(t, srv.Addr, ledger.Config{}, false)

	sellOut(t, pb, "a", 1)
	waitLocal(t, pb, "a")
	hold.Store(true)
	<-held // b's tail stops before its next read: synced, fresh, behind from here on
	if _, err := a.l.SetStock(context.Background(), "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	won, err := buy(a.l, "a", "late-winner", "new-winner", 1)
	if err != nil {
		t.Fatalf("purchase after the stock add: %v", err)
	}
	var dup *ledger.DuplicateError
	if _, err := buy(b, "a", "late-winner", "new-winner", 1); !errors.As(err, &dup) || dup.OrderID != won.OrderID {
		t.Fatalf("the new winner's retry through the lagging process: got %v, want duplicate of %s", err, won.OrderID)
	}
	if _, err := buy(b, "a", "someone", "another", 1); !errors.Is(err, ledger.ErrSoldOut) {
		t.Fatalf("a new request through the lagging process: got %v, want ErrSoldOut", err)
	}
	unhold()
	waitLocal(t, pb, "a")
}
