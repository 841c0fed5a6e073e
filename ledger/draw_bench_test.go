package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
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
		var wg sync.WaitGroup
		const workers = 64
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					u := "user-" + strconv.Itoa(i)
					if _, err := l.Purchase(ctx, ledger.PurchaseRequest{RequestID: u, UserID: u, ItemID: "lot", Quantity: 1}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		reg := time.Since(start)
		// Close registration now: the draw time becomes the present.
		if err := rdb.HSet(ctx, l.Keys().Rules("lot"), "draw_at_ms", time.Now().Add(-time.Second).UnixMilli()).Err(); err != nil {
			b.Fatal(err)
		}
		rdb.ConfigSet(ctx, "slowlog-log-slower-than", "1000")
		rdb.ConfigSet(ctx, "slowlog-max-len", "100000")
		rdb.SlowLogReset(ctx)
		b.ResetTimer()
		start = time.Now()
		batch, _ := strconv.Atoi(os.Getenv("DRAW_BATCH"))
		res, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{Batch: batch})
		took := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
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
		b.ReportMetric(float64(n)/reg.Seconds(), "entries/s")
		b.ReportMetric(took.Seconds(), "draw-s")
		b.ReportMetric(float64(res.Longest.Microseconds())/1000, "longest-batch-ms")
		b.ReportMetric(float64(longest.Microseconds())/1000, "redis-longest-ms")
		b.Logf("%d entries registered in %s; draw %s: %d batches, %d winners, longest batch round trip %s; %d commands over 1 ms in Redis's slow log, %d over 5 ms, longest %s (%s); longest by command %v",
			n, reg.Round(time.Millisecond), took.Round(time.Millisecond), res.Batches, res.Winners, res.Longest, len(slow), over5, longest, what, byCmd)
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
