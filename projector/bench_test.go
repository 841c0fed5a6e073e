package projector_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

// BenchmarkDrain measures how fast the projector drains a backlog of orders into MySQL, by
// batch size: each iteration sells `backlog` units (not timed), then times a projector from
// start until every entry is acknowledged. Run with
//
//	go test -run '^$' -bench Drain -benchtime 3x ./projector
func BenchmarkDrain(b *testing.B) {
	const backlog = 20000
	for _, batch := range []int64{50, 200, 500, 1000, 2000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				e := newEnv(b)
				item := fmt.Sprintf("bench%d", i)
				e.setStock(b, item, backlog)
				sell(b, e.l, item, backlog)
				b.StartTimer()
				start := time.Now()
				stop := e.run(b, projector.Config{BatchSize: batch})
				e.waitSettled(b)
				total += time.Since(start)
				b.StopTimer()
				stop()
				b.StartTimer()
			}
			b.ReportMetric(float64(backlog*b.N)/total.Seconds(), "orders/s")
		})
	}
}

// sell places n one-unit orders of item from 64 goroutines.
func sell(tb testing.TB, l *ledger.Ledger, item string, n int) {
	tb.Helper()
	var wg sync.WaitGroup
	per := n / 64
	for g := range 64 {
		wg.Go(func() {
			for i := range per + boolInt(g < n%64) {
				_, err := l.Purchase(context.Background(), ledger.PurchaseRequest{
					RequestID: fmt.Sprintf("r%d-%d", g, i), UserID: fmt.Sprintf("u%d", g), ItemID: item, Quantity: 1,
				})
				if err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
