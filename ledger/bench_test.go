package ledger_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// BenchmarkPurchase measures purchases straight into Redis (no HTTP) from 64 goroutines per
// core, while selling and once sold out:
//
//	go test -run '^$' -bench Purchase -benchmem ./ledger
func BenchmarkPurchase(b *testing.B) {
	for _, phase := range []struct {
		name     string
		stock    int64
		pipeline int
		senders  int
	}{{"selling", ledger.MaxStock, 0, 0}, {"selling/pipeline=16x8", ledger.MaxStock, 16, 8}, {"selling/pipeline=64x4", ledger.MaxStock, 64, 4}, {"selling/pipeline=32x16", ledger.MaxStock, 32, 16}, {"soldout", 0, 0, 0}, {"soldout/pipeline=16x8", 0, 16, 8}} {
		b.Run(phase.name, func(b *testing.B) {
			srv, _ := testenv.StartRedis(b)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 128})
			if os.Getenv("BENCH_FSYNC") != "" {
				rdb.ConfigSet(context.Background(), "appendfsync", os.Getenv("BENCH_FSYNC"))
			}
			b.Cleanup(func() { rdb.Close() })
			l, err := ledger.Open(context.Background(), rdb, ledger.Config{Pipeline: phase.pipeline, Senders: phase.senders})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := l.SetStock(context.Background(), "hot", ledger.StockChange{Op: ledger.StockSet, Quantity: phase.stock}); err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			b.SetParallelism(64)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					_, err := l.Purchase(context.Background(), ledger.PurchaseRequest{
						RequestID: fmt.Sprintf("r%d", i), UserID: fmt.Sprintf("u%d", i%1000), ItemID: "hot", Quantity: 1,
					})
					if err != nil && phase.stock > 0 {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
