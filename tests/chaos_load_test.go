package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

// The chaos tests' load: chaosClients buyers, each pausing chaosPace after every purchase, so
// the load is bounded in count and rate whatever the machine.
const (
	chaosClients = 200
	chaosPace    = 20 * time.Millisecond
	// chaosMaxQty is the most units one purchase of the load asks for (1..chaosMaxQty).
	chaosMaxQty = 2
	// retryPause is how long a client waits before it retries a purchase whose reply it did
	// not get (or that was answered 503).
	retryPause = 20 * time.Millisecond
)

// chaosScale is FLASHSALE_CHAOS_SCALE (default 1): every chaos test multiplies its load time,
// its outages and its timeouts by it. 1 is the CI size; `make chaos` runs 10.
func chaosScale(t *testing.T) int {
	t.Helper()
	v := os.Getenv("FLASHSALE_CHAOS_SCALE")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		t.Fatalf("FLASHSALE_CHAOS_SCALE=%q: want an integer 1..1000", v)
	}
	return n
}

// saleOptions say what a sale tolerates besides 200 and sold out.
type saleOptions struct {
	// lostReplies allows transport errors (the process that serves the API was killed).
	lostReplies bool
	// unavailable allows 503 (Redis is down).
	unavailable bool
}

// sale is one flash sale under chaos: items put on sale once each, chaosClients HTTP clients
// buying from whichever API process is current, and the books of what they were told.
//
// A client behaves as the API asks: when a reply is lost (transport error) or is 503, it
// retries with the same request_id until it gets an answer; a 409 then carries the order its
// earlier attempt placed. So every order the ledger holds was acknowledged to its client.
type sale struct {
	t       *testing.T
	s       *stack
	opts    saleOptions
	items   []string
	initial map[string]int64
	client  *http.Client
	target  atomic.Pointer[string] // host:port of the current API process

	ctx  context.Context // ends when the test ends: clients give up at once
	stop chan struct{}   // closed to end the load
	wg   sync.WaitGroup

	mu         sync.Mutex
	acked      map[string]string // order_id -> request_id
	unexpected []string          // the first outcomes the scenario does not allow
	surprises  int               // all of them

	attempts, oks, resolved, soldOut, unavailable, lost, loadSoldOut atomic.Int64
}

// newSale puts every item of one per partition of s's ledger on sale, with enough stock that
// load of at most maxLoad cannot sell it out, and returns the sale, not started.
func newSale(t *testing.T, s *stack, maxLoad time.Duration, opts saleOptions) *sale {
	t.Helper()
	items := itemsPerPartition(s.l, 1)
	// The load places at most chaosClients/chaosPace purchases a second of at most
	// chaosMaxQty units, spread at random over the items; a third more covers the spread.
	perSecond := float64(chaosClients) / chaosPace.Seconds() * chaosMaxQty
	stock := int64(perSecond*maxLoad.Seconds()/float64(len(items))*4/3) + 1000
	initial := map[string]int64{}
	for _, item := range items {
		s.setStock(t, item, stock)
		initial[item] = stock
	}
	ctx, cancel := context.WithCancel(context.Background())
	sl := &sale{
		t: t, s: s, opts: opts, items: items, initial: initial,
		client: &http.Client{
			Timeout:   15 * time.Second,
			Transport: &http.Transport{MaxIdleConns: 2 * chaosClients, MaxIdleConnsPerHost: 2 * chaosClients},
		},
		ctx: ctx, stop: make(chan struct{}),
		acked: map[string]string{},
	}
	t.Cleanup(func() {
		cancel()
		sl.stopLoad()
		sl.client.CloseIdleConnections()
	})
	return sl
}

// point makes the clients buy from the API process at addr (host:port) from now on.
func (sl *sale) point(addr string) { sl.target.Store(&addr) }

// start starts the load: chaosClients clients, each buying 1..chaosMaxQty units of a random
// item every chaosPace, until stopLoad or until maxLoad has passed.
func (sl *sale) start(maxLoad time.Duration) {
	end := time.Now().Add(maxLoad)
	for c := range chaosClients {
		sl.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			// Spread the clients' first purchases over one pace.
			if !sl.pause(time.Duration(rng.Int64N(int64(chaosPace)))) {
				return
			}
			for i := 0; time.Now().Before(end); i++ {
				req := fmt.Sprintf("c%d-%d", c, i)
				user := fmt.Sprintf("u%d", rng.IntN(1000))
				item := sl.items[rng.IntN(len(sl.items))]
				if sl.buy(req, user, item, 1+rng.Int64N(chaosMaxQty)) == http.StatusGone {
					sl.loadSoldOut.Add(1)
				}
				if !sl.pause(chaosPace) {
					return
				}
			}
		})
	}
}

// pause waits d; false when the load was stopped (or the test ended) meanwhile.
func (sl *sale) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sl.stop:
		return false
	case <-sl.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// stopLoad ends the load and waits for every client to have its answer.
func (sl *sale) stopLoad() {
	select {
	case <-sl.stop:
	default:
		close(sl.stop)
	}
	sl.wg.Wait()
}

// buy places one purchase as a well-behaved client does: retry with the same request_id
// after a lost reply or a 503, until an answer. It returns the final status (0 if the test
// ended first).
func (sl *sale) buy(req, user, item string, qty int64) int {
	give := time.Now().Add(2 * time.Minute)
	for attempt := 0; ; attempt++ {
		sl.attempts.Add(1)
		status, r, err := sl.post(req, user, item, qty)
		switch {
		case sl.ctx.Err() != nil:
			return 0
		case err != nil:
			sl.lost.Add(1)
			if !sl.opts.lostReplies {
				sl.unexpectedf("%s: lost reply: %v", req, err)
			}
		case status == http.StatusServiceUnavailable:
			sl.unavailable.Add(1)
			if !sl.opts.unavailable {
				sl.unexpectedf("%s: 503 %q", req, r.Message)
			}
		case status == http.StatusOK && r.Success && r.OrderID != "":
			sl.oks.Add(1)
			sl.ack(req, r.OrderID)
			return status
		case status == http.StatusConflict && attempt > 0 && r.OrderID != "":
			// An earlier attempt placed the order and its reply was lost.
			sl.resolved.Add(1)
			sl.ack(req, r.OrderID)
			return status
		case status == http.StatusGone:
			sl.soldOut.Add(1)
			return status
		default:
			sl.unexpectedf("%s (attempt %d): got %d %+v", req, attempt+1, status, r)
			return status
		}
		if time.Now().After(give) {
			sl.unexpectedf("%s: no answer after %d attempts", req, attempt+1)
			return 0
		}
		if !sl.sleepRetry() {
			return 0
		}
	}
}

func (sl *sale) sleepRetry() bool {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-sl.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// post sends one purchase to the current API process; err is a lost reply.
func (sl *sale) post(req, user, item string, qty int64) (int, apiReply, error) {
	body, _ := json.Marshal(map[string]any{"request_id": req, "user_id": user, "item_id": item, "quantity": qty})
	hreq, err := http.NewRequestWithContext(sl.ctx, http.MethodPost, "http://"+*sl.target.Load()+"/api/purchase", bytes.NewReader(body))
	if err != nil {
		return 0, apiReply{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := sl.client.Do(hreq)
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

func (sl *sale) ack(req, orderID string) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if prev, ok := sl.acked[orderID]; ok && prev != req {
		sl.surprise(fmt.Sprintf("order %s acknowledged to requests %s and %s", orderID, prev, req))
	}
	sl.acked[orderID] = req
}

func (sl *sale) unexpectedf(format string, args ...any) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.surprise(fmt.Sprintf(format, args...))
}

// surprise records an outcome the scenario does not allow; sl.mu is held.
func (sl *sale) surprise(what string) {
	sl.surprises++
	if len(sl.unexpected) < 10 {
		sl.unexpected = append(sl.unexpected, what)
	}
}

// unexpectedCount returns the number of outcomes so far that the scenario does not allow.
func (sl *sale) unexpectedCount() int {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.surprises
}

// ackCount returns the number of orders acknowledged so far.
func (sl *sale) ackCount() int {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return len(sl.acked)
}

// waitAcks waits until more than n orders have been acknowledged: the sale goes on.
func (sl *sale) waitAcks(n int, timeout time.Duration, what string) {
	sl.t.Helper()
	deadline := time.Now().Add(timeout)
	for sl.ackCount() <= n {
		if time.Now().After(deadline) {
			sl.t.Fatalf("%s: no order acknowledged within %s (still %d)", what, timeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sellOut ends the sale: per item, clients buy 100 units at a time, then fewer on "sold out",
// until one unit is sold out. Then every item's stock must be exactly 0.
func (sl *sale) sellOut() {
	sl.t.Helper()
	per := chaosClients / len(sl.items)
	var wg sync.WaitGroup
	for _, item := range sl.items {
		for g := range per {
			wg.Go(func() {
				qty := int64(100)
				for i := 0; sl.ctx.Err() == nil; i++ {
					req := fmt.Sprintf("s-%s-%d-%d", item, g, i)
					switch sl.buy(req, fmt.Sprintf("u%d", g), item, qty) {
					case http.StatusGone:
						if qty == 1 {
							return
						}
						qty = max(1, qty/2)
					case http.StatusOK, http.StatusConflict:
					default:
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for _, item := range sl.items {
		it, err := sl.s.l.Item(context.Background(), item)
		if err != nil {
			sl.t.Fatalf("read item %s: %v", item, err)
		}
		if it.Stock != 0 {
			sl.t.Errorf("item %s after the sell-out: got stock %d, want 0", item, it.Stock)
		}
	}
}

// ackedIDs returns the acknowledged order IDs.
func (sl *sale) ackedIDs() []string {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	ids := make([]string, 0, len(sl.acked))
	for id := range sl.acked {
		ids = append(ids, id)
	}
	return ids
}

// drain waits until MySQL holds as many orders as were acknowledged and the projector group
// has settled. It gives up when the group has settled and MySQL has not grown for a second
// (nothing more will come), or after timeout; the checks then tell what is wrong.
func (sl *sale) drain(timeout time.Duration) time.Duration {
	sl.t.Helper()
	start := time.Now()
	want := sl.ackCount()
	last, since := -1, time.Now()
	for {
		got := sl.s.countOrders(sl.t)
		settled := sl.s.groupsSettled(sl.t)
		switch {
		case got >= want && settled:
			return time.Since(start)
		case got != last || !settled:
			last, since = got, time.Now()
		case time.Since(since) > time.Second:
			sl.t.Errorf("drain stopped: the projector has settled with %d orders in MySQL, %d acknowledged", got, want)
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			sl.t.Errorf("not drained within %s: %d orders in MySQL, %d acknowledged", timeout, got, want)
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chaosFigures are a scenario's results, as RELIABILITY.md reports them.
type chaosFigures struct {
	requests    int64         // purchase attempts sent
	acked       int           // distinct orders acknowledged (200, or 409 after a lost reply)
	found       int           // acknowledged orders found in MySQL
	duplicated  int           // extra MySQL rows for one order_id or for one live (item, request)
	leaked      int64         // put on sale - (Redis stock + live units in MySQL); < 0 is oversold
	unavailable int64         // 503s seen
	lost        int64         // replies lost (transport errors)
	resolved    int64         // lost replies resolved by a 409 carrying the order
	drained     time.Duration // how long the backlog took to land after the sale
}

// figures reads MySQL and Redis once the sale has drained.
func (sl *sale) figures() chaosFigures {
	sl.t.Helper()
	ctx := context.Background()
	f := chaosFigures{
		requests: sl.attempts.Load(), unavailable: sl.unavailable.Load(),
		lost: sl.lost.Load(), resolved: sl.resolved.Load(),
	}
	rows, err := sl.s.db.QueryContext(ctx, "SELECT order_id, item_id, request_id, quantity, status FROM orders")
	if err != nil {
		sl.t.Fatalf("read orders: %v", err)
	}
	defer rows.Close()
	perOrder := map[string]int{}
	perRequest := map[[2]string]int{}
	live := map[string]int64{}
	for rows.Next() {
		var id, item, req, status string
		var qty int64
		if err := rows.Scan(&id, &item, &req, &qty, &status); err != nil {
			sl.t.Fatalf("scan order: %v", err)
		}
		if perOrder[id]++; perOrder[id] > 1 {
			f.duplicated++
		}
		if status == ledger.StatusConfirmed {
			live[item] += qty
			if perRequest[[2]string{item, req}]++; perRequest[[2]string{item, req}] > 1 {
				f.duplicated++
			}
		}
	}
	if err := rows.Err(); err != nil {
		sl.t.Fatalf("read orders: %v", err)
	}
	sl.mu.Lock()
	f.acked = len(sl.acked)
	for id := range sl.acked {
		if perOrder[id] > 0 {
			f.found++
		}
	}
	sl.mu.Unlock()
	for item, put := range sl.initial {
		it, err := sl.s.l.Item(ctx, item)
		if err != nil {
			sl.t.Fatalf("read item %s: %v", item, err)
		}
		f.leaked += put - (it.Stock + live[item])
	}
	return f
}

// finish ends a scenario: the load is stopped, the stock sold out, the backlog drained; it
// logs the figures in one line (with extra, the scenario's own), then checks them and the
// books: every acknowledged order in MySQL exactly once, no unit leaked, nothing but the
// scenario's allowed outcomes, and `flashsale audit` clean.
func (sl *sale) finish(drainTimeout time.Duration, extra string) chaosFigures {
	sl.t.Helper()
	sl.stopLoad()
	loadOrders := sl.ackCount()
	sl.sellOut()
	took := sl.drain(drainTimeout)
	f := sl.figures()
	f.drained = took
	surprises := sl.unexpectedCount()
	sl.t.Logf("figures: acknowledged %d, found in MySQL %d, duplicated %d, units leaked %d, 503s %d | "+
		"requests %d, unexpected outcomes %d, lost replies %d (resolved by 409: %d), sell-out orders %d, drained in %s; %s",
		f.acked, f.found, f.duplicated, f.leaked, f.unavailable,
		f.requests, surprises, f.lost, f.resolved, f.acked-loadOrders, took.Round(time.Millisecond), extra)

	sl.mu.Lock()
	for _, u := range sl.unexpected {
		sl.t.Errorf("unexpected outcome: %s", u)
	}
	if more := sl.surprises - len(sl.unexpected); more > 0 {
		sl.t.Errorf("... and %d more unexpected outcomes", more)
	}
	sl.mu.Unlock()
	if n := sl.loadSoldOut.Load(); n > 0 {
		sl.t.Errorf("%d purchases of the load were sold out: the stock ran out before the chaos ended", n)
	}
	if f.found != f.acked {
		sl.t.Errorf("got %d acknowledged orders in MySQL, want all %d", f.found, f.acked)
	}
	if f.duplicated != 0 {
		sl.t.Errorf("got %d duplicated orders in MySQL, want 0", f.duplicated)
	}
	if f.leaked != 0 {
		sl.t.Errorf("got %d units leaked (negative: oversold), want 0", f.leaked)
	}
	sl.s.checkExactlyOnce(sl.t, sl.ackedIDs(), sl.initial)
	return f
}

// inHand returns, over every partition, the entries pending on consumer in the projector
// group and how many of them are orders already committed to MySQL (a batch killed between
// its commit and its XACK).
func (s *stack) inHand(t *testing.T, consumer string) (pending, committed int) {
	t.Helper()
	ctx := context.Background()
	var ids []any
	for p := range s.l.Keys().Partitions() {
		ps, err := s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: s.l.Keys().Events(p), Group: projector.DefaultGroup,
			Start: "-", End: "+", Count: 100000, Consumer: consumer,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("pending of %s on partition %d: %v", consumer, p, err)
		}
		for _, e := range ps {
			ids = append(ids, fmt.Sprintf("%d-%s", p, e.ID))
		}
	}
	if len(ids) == 0 {
		return 0, 0
	}
	q := "SELECT COUNT(*) FROM orders WHERE order_id IN (?" + string(bytes.Repeat([]byte(",?"), len(ids)-1)) + ")"
	if err := s.db.QueryRow(q, ids...).Scan(&committed); err != nil {
		t.Fatalf("count committed pending orders: %v", err)
	}
	return len(ids), committed
}

// startAPI starts `flashsale cmd args...` (serve or ingest) with dsn as its MySQL and waits
// until it listens.
func startAPI(t *testing.T, st *stack, dsn, cmd string, args ...string) *server {
	t.Helper()
	p := startProcess(t, cmd, st.env(dsn), append([]string{cmd}, args...)...)
	srv := &server{process: p}
	srv.httpAddr = p.waitLog(t, httpListening, 15*time.Second)[1]
	srv.grpcAddr = p.waitLog(t, grpcListening, 15*time.Second)[1]
	return srv
}

// redisErrors returns how many error replies starting with prefix Redis has sent (INFO
// errorstats).
func redisErrors(t *testing.T, rdb redis.UniversalClient, prefix string) int64 {
	t.Helper()
	info, err := rdb.InfoMap(context.Background(), "errorstats").Result()
	if err != nil {
		t.Fatalf("info errorstats: %v", err)
	}
	var n int64
	fmt.Sscanf(info["Errorstats"]["errorstat_"+prefix], "count=%d", &n)
	return n
}
