package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/lua"
	"github.com/flashsale/flashsale/tests/testenv"
)

// BenchmarkDraw registers DRAW_ENTRIES entries (default 1,000,000; DRAW_BATCH sets the
// entries per batch call) through Purchase from 64
// goroutines, then draws 1,000 units among them, and reports the registration rate, the
// draw's wall time, the longest batch call and the longest command Redis ran while drawing
// (its slow log, on the benchmark's own redis-server, records every call over 1 ms):
//
//	go test -run '^$' -bench Draw -benchtime 1x -timeout 30m ./ledger
func BenchmarkDraw(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("DRAW_ENTRIES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for range b.N {
		ctx := context.Background()
		srv, _ := testenv.StartRedis(b)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 128})
		b.Cleanup(func() { rdb.Close() })
		// No AOF rewrite (a fork of a gigabyte) in the middle of the measurement.
		rdb.ConfigSet(ctx, "auto-aof-rewrite-percentage", "0")
		l, err := ledger.Open(ctx, rdb, ledger.Config{})
		if err != nil {
			b.Fatal(err)
		}
		now, _ := l.RedisTime(ctx)
		at := now.Add(time.Hour)
		if _, err := l.SetStock(ctx, "lot", ledger.StockChange{Op: ledger.StockSet, Quantity: 1000,
			PayWithin: dur(time.Hour), DrawAt: &at, DrawCommit: ledger.SeedCommitment(drawSeed)}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if os.Getenv("DRAW_FILL") == "script" {
			fillEntries(b, rdb, l, "lot", n)
		} else {
			purchaseEntries(b, l, "lot", n)
		}
		reg := time.Since(start)
		// Close registration now: the draw time becomes the present.
		if err := rdb.HSet(ctx, l.Keys().Rules("lot"), "draw_at_ms", time.Now().Add(-time.Second).UnixMilli()).Err(); err != nil {
			b.Fatal(err)
		}
		watch := watchRedis(b, rdb)
		b.ResetTimer()
		start = time.Now()
		batch, _ := strconv.Atoi(os.Getenv("DRAW_BATCH"))
		res, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{Batch: batch})
		took := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		longest, seen := watch()
		b.ReportMetric(float64(n)/reg.Seconds(), "entries/s")
		b.ReportMetric(took.Seconds(), "draw-s")
		b.ReportMetric(float64(res.Longest.Microseconds())/1000, "longest-batch-ms")
		b.ReportMetric(float64(longest.Microseconds())/1000, "redis-longest-ms")
		b.Logf("%d entries registered in %s; draw %s: %d batches, %d winners, longest batch round trip %s; load average %s\n%s",
			n, reg.Round(time.Millisecond), took.Round(time.Millisecond), res.Batches, res.Winners, res.Longest, loadAverage(), seen)
	}
}

// watchRedis starts watching what rdb's server does: its slow log (every command over 1 ms,
// scripts' inner commands included), its command statistics and its latency monitor (events
// over 1 ms). The function it returns reports the longest command in the slow log and a
// summary of all three since the start.
func watchRedis(b *testing.B, rdb *redis.Client) func() (time.Duration, string) {
	ctx := context.Background()
	for _, kv := range [][2]string{{"slowlog-log-slower-than", "1000"}, {"slowlog-max-len", "100000"}, {"latency-monitor-threshold", "1"}} {
		if err := rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			b.Fatal(err)
		}
	}
	rdb.SlowLogReset(ctx)
	rdb.Do(ctx, "LATENCY", "RESET")
	rdb.ConfigResetStat(ctx)
	return func() (time.Duration, string) {
		slow, err := rdb.SlowLogGet(ctx, -1).Result()
		if err != nil {
			b.Fatal(err)
		}
		var longest time.Duration
		var what string
		byCmd := map[string]time.Duration{}
		over5 := 0
		for _, s := range slow {
			c := fmt.Sprint(s.Args[0])
			byCmd[c] = max(byCmd[c], s.Duration)
			if s.Duration > 5*time.Millisecond {
				over5++
			}
			if s.Duration > longest {
				longest, what = s.Duration, c
			}
		}
		var out strings.Builder
		fmt.Fprintf(&out, "slow log: %d commands over 1 ms, %d over 5 ms, longest %s (%s); longest by command %v\n", len(slow), over5, longest, what, byCmd)
		stats, _ := rdb.Info(ctx, "commandstats").Result()
		out.WriteString("commands (calls, mean µs per call):")
		for _, line := range strings.Split(stats, "\n") {
			name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":")
			if ok && !strings.HasPrefix(line, "#") {
				var calls, usec int64
				var perCall float64
				fmt.Sscanf(rest, "calls=%d,usec=%d,usec_per_call=%f", &calls, &usec, &perCall)
				fmt.Fprintf(&out, " %s %d %.1f;", name, calls, perCall)
			}
		}
		out.WriteString("\n")
		lat, _ := rdb.Do(ctx, "LATENCY", "LATEST").Slice()
		fmt.Fprintf(&out, "latency monitor (event, time, latest ms, max ms): %v", lat)
		return longest, out.String()
	}
}

// loadAverage returns the machine's load averages (1, 5, 15 min), as /proc/loadavg has them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// purchaseEntries registers users user-0..user-(n-1) in item's draw through Purchase, from 64
// goroutines: the path a buyer's request takes.
func purchaseEntries(b *testing.B, l *ledger.Ledger, item string, n int) {
	var wg sync.WaitGroup
	const workers = 64
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				u := "user-" + strconv.Itoa(i)
				if _, err := l.Purchase(context.Background(), ledger.PurchaseRequest{RequestID: u, UserID: u, ItemID: item, Quantity: 1}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// fillEntries registers the same entries as purchaseEntries by calling draw_enter.lua itself,
// 1,000 calls a pipeline: the same keys and events in a fraction of the time, for measuring
// the draw rather than the registration (DRAW_FILL=script).
func fillEntries(b *testing.B, rdb *redis.Client, l *ledger.Ledger, item string, n int) {
	ctx := context.Background()
	k := l.Keys()
	p := k.Partition(item)
	enter := redis.NewScript(lua.DrawEnter)
	if err := enter.Load(ctx, rdb).Err(); err != nil {
		b.Fatal(err)
	}
	for from := 0; from < n; from += 1000 {
		pipe := rdb.Pipeline()
		for i := from; i < min(from+1000, n); i++ {
			u := "user-" + strconv.Itoa(i)
			keys := []string{k.Rules(item), k.Requests(item), k.DrawEntries(item), k.Events(p), k.Stock(item)}
			enter.EvalSha(ctx, pipe, keys, item, u, u, 1, (24 * time.Hour).Milliseconds(), p, k.OrderPrefix(p))
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range cmds {
			if a, _ := c.(*redis.Cmd).Slice(); len(a) != 3 || a[0] != int64(0) {
				b.Fatalf("enter: %v", a)
			}
		}
	}
}

// BenchmarkPromotion measures how long after a winner's pay_by its unit goes to the next
// entry of the waitlist, with a sweeper every 50 ms: 100 winners expire, 100 are promoted.
//
//	go test -run '^$' -bench Promotion -benchtime 1x ./ledger
func BenchmarkPromotion(b *testing.B) {
	for range b.N {
		ctx := context.Background()
		_, rdb := testenv.StartRedis(b)
		l, err := ledger.Open(ctx, rdb, ledger.Config{})
		if err != nil {
			b.Fatal(err)
		}
		now, _ := l.RedisTime(ctx)
		at := now.Add(3 * time.Second)
		if _, err := l.SetStock(ctx, "lot", ledger.StockChange{Op: ledger.StockSet, Quantity: 100,
			PayWithin: dur(time.Second), DrawAt: &at, DrawCommit: ledger.SeedCommitment(drawSeed)}); err != nil {
			b.Fatal(err)
		}
		for i := range 300 {
			u := "user-" + strconv.Itoa(i)
			if _, err := l.Purchase(ctx, ledger.PurchaseRequest{RequestID: u, UserID: u, ItemID: "lot", Quantity: 1}); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(time.Until(at) + 10*time.Millisecond)
		if _, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{}); err != nil {
			b.Fatal(err)
		}
		sw := l.NewSweeper(50*time.Millisecond, 100, slog.New(slog.DiscardHandler))
		sctx, cancel := context.WithCancel(ctx)
		go sw.Run(sctx)
		deadline := time.Now().Add(10 * time.Second)
		var lat []time.Duration
		for len(lat) < 100 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			lat = lat[:0]
			due := map[string]time.Time{} // expired order -> its pay_by
			var expired []time.Time
			for _, e := range testenv.Events(b, l) {
				switch e.Type {
				case ledger.EventExpired:
					due[e.OrderID] = e.PayBy
					expired = append(expired, e.PayBy)
				case ledger.EventPromoted:
					if len(expired) > len(lat) {
						lat = append(lat, e.Time.Sub(expired[len(lat)]))
					}
				}
			}
		}
		cancel()
		if len(lat) < 100 {
			b.Fatalf("%d promotions within 10 s", len(lat))
		}
		var worst, sum time.Duration
		for _, d := range lat {
			worst = max(worst, d)
			sum += d
		}
		b.ReportMetric(float64(sum.Milliseconds())/float64(len(lat)), "mean-ms")
		b.ReportMetric(float64(worst.Milliseconds()), "max-ms")
	}
}
