package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// The chaos scenarios. Each runs one flash sale over HTTP against real processes (the built
// flashsale binary, a redis-server of its own with AOF fsynced on every write, a MariaDB
// database of its own) under the load of chaosClients clients, breaks something in the middle
// of it, sells the rest of the stock, drains the projector and checks the books: every
// acknowledged order in MySQL exactly once, no unit leaked, `flashsale audit` clean. Sizes
// scale with FLASHSALE_CHAOS_SCALE (see chaosScale); each test logs its figures in one line.

// scaled returns d times the chaos scale.
func scaled(t *testing.T, d time.Duration) time.Duration {
	return time.Duration(chaosScale(t)) * d
}

// drainTimeout bounds the drain of a chaos sale's backlog.
func drainTimeout(t *testing.T) time.Duration {
	return 30*time.Second + scaled(t, 20*time.Second)
}

// promptDrain bounds how long the backlog of a sale may take to land once nothing is broken
// any more and the projector keeps up: a third of the claim loop's default min-idle (30 s), so
// that entries left to the claim loop show.
const promptDrain = 10 * time.Second

// TestChaosServeKill9 kills `flashsale serve` with SIGKILL in the middle of the load and
// restarts it under the same consumer name: the clients whose replies were lost retry with
// their request_id and get their order back (409), the restarted projector finishes the
// batches the dead one had in hand, and every acknowledged order lands exactly once.
func TestChaosServeKill9(t *testing.T) {
	phase := scaled(t, 1500*time.Millisecond)
	kills := max(1, chaosScale(t)/3)
	maxLoad := time.Duration(kills+1)*phase*3/2 + 15*time.Second
	s := newStack(t)
	sl := newSale(t, s, maxLoad, saleOptions{lostReplies: true})
	args := []string{"-consumer", "chaos-serve"}
	srv := startAPI(t, s, s.dsn, "serve", args...)
	sl.point(srv.httpAddr)
	sl.start(maxLoad)

	inHand := 0
	var down time.Duration
	for k := range kills {
		time.Sleep(phase)
		sl.waitAcks(0, 10*time.Second, "before the kill")
		srv.kill()
		killedAt := time.Now()
		n, _ := s.inHand(t, "chaos-serve")
		inHand += n
		srv = startAPI(t, s, s.dsn, "serve", args...)
		sl.point(srv.httpAddr)
		down += time.Since(killedAt)
		sl.waitAcks(sl.ackCount(), 10*time.Second, fmt.Sprintf("after restart %d", k+1))
	}
	time.Sleep(phase)

	f := sl.finish(drainTimeout(t), fmt.Sprintf("serve killed %d times (down %s in all), %d ledger entries in hand at the kills",
		kills, down.Round(time.Millisecond), inHand))
	if f.lost == 0 {
		t.Errorf("no reply was lost: the kill did not land while purchases were in flight")
	}
	if srv.exited() {
		t.Errorf("the restarted serve exited (code %d)", srv.cmd.ProcessState.ExitCode())
	}
}

// TestChaosProjectorKill9 sells through `flashsale ingest` while a separate `flashsale
// project` is killed with SIGKILL five times, each time with a batch in hand, and restarted
// under the same consumer name: batches committed but not acknowledged are redelivered and
// change nothing, and every acknowledged order lands exactly once.
func TestChaosProjectorKill9(t *testing.T) {
	const kills = 5
	const consumer = "chaos-projector"
	phase := scaled(t, 800*time.Millisecond)
	maxLoad := (kills+1)*phase*3/2 + 15*time.Second
	s := newStack(t)
	sl := newSale(t, s, maxLoad, saleOptions{})
	api := startAPI(t, s, s.dsn, "ingest")
	sl.point(api.httpAddr)
	args := []string{"-consumer", consumer, "-batch", "200"}
	proj := startProject(t, s, args...)
	sl.start(maxLoad)

	prev, inHand, committed, midBatch := 0, 0, 0, 0
	for k := range kills {
		time.Sleep(phase)
		// The projector is at work: MySQL has grown since the last kill.
		deadline := time.Now().Add(15 * time.Second)
		for s.countOrders(t) <= prev {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: MySQL did not grow beyond %d orders within 15s", k+1, prev)
			}
			if proj.exited() {
				t.Fatalf("run %d: project exited on its own (code %d)", k+1, proj.cmd.ProcessState.ExitCode())
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Kill it while it holds a batch: read, not yet acknowledged.
		deadline = time.Now().Add(2 * time.Second)
		for s.pendingOf(t, consumer) == 0 && time.Now().Before(deadline) {
		}
		proj.kill()
		n, c := s.inHand(t, consumer)
		if n > 0 {
			midBatch++
		}
		inHand += n
		committed += c
		prev = s.countOrders(t)
		proj = startProject(t, s, args...)
	}
	time.Sleep(phase)

	sl.finish(drainTimeout(t), fmt.Sprintf("projector killed %d times, %d of them mid-batch; %d entries in hand at the kills, %d of them already committed to MySQL",
		kills, midBatch, inHand, committed))
	if inHand == 0 {
		t.Errorf("no kill left a batch in hand: nothing was redelivered")
	}
	if api.exited() {
		t.Errorf("ingest exited (code %d)", api.cmd.ProcessState.ExitCode())
	}
}

// TestChaosRedisKill9 kills the redis-server with SIGKILL in the middle of the load and
// restarts it from its AOF: while it is down clients get 503 and retry with their
// request_id; afterwards nothing acknowledged is missing, nothing is oversold (the sale still
// sells exactly its stock) and every acknowledged order lands exactly once.
func TestChaosRedisKill9(t *testing.T) {
	phase := scaled(t, 1500*time.Millisecond)
	down := scaled(t, time.Second)
	maxLoad := 3*phase + down + 20*time.Second
	s := newStack(t)
	sl := newSale(t, s, maxLoad, saleOptions{unavailable: true})
	srv := startAPI(t, s, s.dsn, "serve", "-consumer", "chaos-redis")
	sl.point(srv.httpAddr)
	sl.start(maxLoad)

	time.Sleep(phase)
	sl.waitAcks(0, 10*time.Second, "before the kill")
	before := sl.ackCount()
	u0 := sl.unavailable.Load()
	s.redis.Kill()
	time.Sleep(down)
	whileDown := sl.unavailable.Load() - u0
	restartAt := time.Now()
	if err := s.redis.Start(); err != nil {
		t.Fatalf("restart redis from its AOF: %v", err)
	}
	restart := time.Since(restartAt)
	sl.waitAcks(sl.ackCount(), 15*time.Second, "after the Redis restart")
	time.Sleep(phase)

	f := sl.finish(drainTimeout(t), fmt.Sprintf("Redis down %s (restart from AOF %s), %d orders acknowledged before the kill, %d 503s while down",
		down, restart.Round(time.Millisecond), before, whileDown))
	if whileDown == 0 {
		t.Errorf("no 503 while Redis was down")
	}
	// Redis and the projector are both up again: the projector keeps up with the load, so
	// the backlog left at the end of the sale lands in moments. Orders that take longer are
	// waiting for the claim loop's min-idle (30 s); see TestChaosProjectorReadReplyLost.
	if f.drained > promptDrain {
		t.Errorf("the backlog took %s to land after the sale, want at most %s: some entries waited for the claim loop", f.drained.Round(time.Millisecond), promptDrain)
	}
	if f.unavailable == 0 {
		t.Errorf("no 503 seen")
	}
	if srv.exited() {
		t.Errorf("serve exited (code %d)", srv.cmd.ProcessState.ExitCode())
	}
}

// TestChaosMySQLCut cuts `flashsale serve` off from MySQL in the middle of the load: sales go
// on (200s during the cut), nothing is cancelled or restocked (no restock event in the
// ledger), and once MySQL is back the backlog lands exactly once.
func TestChaosMySQLCut(t *testing.T) {
	phase := scaled(t, 1500*time.Millisecond)
	cut := scaled(t, 3*time.Second)
	maxLoad := (2*phase+cut)*3/2 + 10*time.Second
	s := newStack(t)
	sl := newSale(t, s, maxLoad, saleOptions{})
	proxy := testenv.StartProxy(t, testenv.MySQLAddr(t, s.dsn))
	srv := startAPI(t, s, testenv.WithMySQLAddr(t, s.dsn, proxy.Addr), "serve", "-consumer", "chaos-mysql")
	sl.point(srv.httpAddr)
	// Orders must reach MySQL before the cut. On a busy MariaDB the projector's first INSERT
	// can wait out its write timeout (10 s) and land on its retry: one order first, given
	// that long to land, and then the load.
	sl.buy("first", "u0", sl.items[0], 1)
	deadline := time.Now().Add(30 * time.Second)
	for s.countOrders(t) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no order reached MySQL within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sl.start(maxLoad)

	time.Sleep(phase)
	proxy.Cut()
	oks := sl.oks.Load()
	time.Sleep(cut)
	during := sl.oks.Load() - oks
	backlog := sl.ackCount() - s.countOrders(t)
	proxy.Restore()
	time.Sleep(phase)

	sl.finish(drainTimeout(t), fmt.Sprintf("MySQL cut off for %s: %d sales during the cut, backlog %d orders at the restore",
		cut, during, backlog))
	if during == 0 {
		t.Errorf("no purchase succeeded while MySQL was cut off")
	}
	if srv.exited() {
		t.Errorf("serve exited (code %d)", srv.cmd.ProcessState.ExitCode())
	}
}

// TestChaosScriptFlush empties Redis' script cache (SCRIPT FLUSH) in the middle of the load,
// several times a few hundred milliseconds apart and then in a storm (every millisecond for
// a while), with each of the two purchase paths of `flashsale serve`: one script call per
// round trip (-pipeline 0: EVALSHA, then EVAL on NOSCRIPT) and pipelines of EVALSHA (the
// default, here with -pipeline 64; refused calls go out again as EVAL). Purchases go on and no
// purchase fails other than sold out.
func TestChaosScriptFlush(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"single", []string{"-pipeline", "0"}},
		{"pipelined", []string{"-pipeline", "64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const every = 500 * time.Millisecond
			flushes := 5 * chaosScale(t)
			storm := scaled(t, time.Second)
			maxLoad := (time.Duration(flushes+2)*every+storm)*3/2 + 10*time.Second
			s := newStack(t)
			sl := newSale(t, s, maxLoad, saleOptions{})
			srv := startAPI(t, s, s.dsn, "serve", append([]string{"-consumer", "chaos-flush"}, tt.args...)...)
			sl.point(srv.httpAddr)
			sl.start(maxLoad)

			ctx := context.Background()
			noscript := redisErrors(t, s.rdb, "NOSCRIPT")
			for range flushes {
				time.Sleep(every)
				if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
					t.Fatalf("script flush: %v", err)
				}
			}
			time.Sleep(every)
			spaced := redisErrors(t, s.rdb, "NOSCRIPT") - noscript
			calm := sl.unexpectedCount()
			stormed := 0
			for end := time.Now().Add(storm); time.Now().Before(end); stormed++ {
				if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
					t.Fatalf("script flush: %v", err)
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(every)
			noscript = redisErrors(t, s.rdb, "NOSCRIPT") - noscript

			sl.finish(drainTimeout(t), fmt.Sprintf("%d SCRIPT FLUSH %s apart then %d in %s; NOSCRIPT replies: %d after the spaced flushes, %d in all; unexpected outcomes before the storm: %d",
				flushes, every, stormed, storm, spaced, noscript, calm))
			if spaced == 0 {
				t.Errorf("no NOSCRIPT reply after the spaced flushes: the fallback was not exercised")
			}
			if srv.exited() {
				t.Errorf("serve exited (code %d)", srv.cmd.ProcessState.ExitCode())
			}
		})
	}
}

// TestChaosProjectorReadReplyLost loses the reply of one XREADGROUP of a live `flashsale
// project` (the connection breaks after Redis delivered the entries, as when Redis is killed
// in TestChaosRedisKill9): Redis has put the entries in the consumer's pending list, the
// consumer never saw them. A live projector must still project them promptly, not leave
// them to the claim loop's min-idle (30 s).
func TestChaosProjectorReadReplyLost(t *testing.T) {
	const consumer = "reply-lost"
	s := newStack(t)
	items := itemsPerPartition(s.l, 1)
	initial := map[string]int64{}
	for _, item := range items {
		s.setStock(t, item, 1000)
		initial[item] = 1000
	}
	// An XREADGROUP reply that carries entries names the stream; no other reply the
	// projector gets does.
	cutter := startReplyCutter(t, s.redis.Addr, []byte(":events\r\n"))
	// No archiver: its group reads (XREADGROUP) name the stream too, and the cut is meant for
	// the projector's.
	env := append(s.env(s.dsn), "FLASHSALE_REDIS_ADDR="+cutter.Addr, "FLASHSALE_ARCHIVE=none")
	startProcess(t, "project", env, "project", "-consumer", consumer)

	acked := s.placeOrders(t, items, 40, 4)
	s.waitDrained(t, len(acked), 10*time.Second)

	cutter.arm()
	for i := range 200 {
		rc, err := s.l.Purchase(context.Background(), ledger.PurchaseRequest{
			RequestID: fmt.Sprintf("late-%d", i), UserID: fmt.Sprintf("late-user-%d", i), ItemID: items[i%len(items)], Quantity: 1,
		})
		if err != nil {
			t.Fatalf("purchase %d: %v", i, err)
		}
		acked = append(acked, rc.OrderID)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cutter.cuts.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no XREADGROUP reply with entries within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cutAt := time.Now()

	deadline = cutAt.Add(promptDrain)
	for s.countOrders(t) < len(acked) || !s.groupsSettled(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%s after one lost XREADGROUP reply: %d of %d orders in MySQL, %d entries still pending on %s "+
				"although the projector runs and Redis answers: the entries of the lost reply wait for the claim loop",
				promptDrain, s.countOrders(t), len(acked), s.pendingOf(t, consumer), consumer)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("figures: acknowledged %d, landed %s after the lost reply", len(acked), time.Since(cutAt).Round(time.Millisecond))
	s.checkExactlyOnce(t, acked, initial)
}
