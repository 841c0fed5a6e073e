package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// BenchmarkServe runs flashsale's purchase path (ingest over a real Redis with AOF fsync
// always, pipelined as serve does by default, no projector) in this process and drives it with the load generator, so that one
// CPU profile shows where a purchase's time goes, client and server alike:
//
//	go test -run '^$' -bench Serve -benchtime 50000x -cpuprofile /tmp/cpu.out ./cmd/loadtest
//	go tool pprof -top -cum -focus 'ingest|ledger' /tmp/cpu.out
func BenchmarkServe(b *testing.B) {
	srv, _ := testenv.StartRedis(b)
	// As flashsale serve configures its client: 32 connections per core, no retries.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64, MaxRetries: -1})
	b.Cleanup(func() { rdb.Close() })
	benchServe(b, rdb, ledger.Config{})
}

// BenchmarkServeTopology runs the same purchase path on a Redis Cluster of 3 masters and 3
// replicas started for it, as is and with every purchase waiting for one replica
// (-min-replicas 1), for the cost per request of each set-up on this machine:
//
//	go test -run '^$' -bench ServeTopology -benchtime 40000x ./cmd/loadtest
//
// A cluster spreads the partitions over its masters; on one machine they share its cores, so
// this shows the cost of the cluster's routing and of WAIT, not the scaling of N machines.
func BenchmarkServeTopology(b *testing.B) {
	c := testenv.StartCluster(b)
	for _, min := range []int{0, 1} {
		b.Run(fmt.Sprintf("cluster/min-replicas=%d", min), func(b *testing.B) {
			rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), PoolSize: 64, MaxRetries: -1})
			b.Cleanup(func() { rdb.Close() })
			benchServe(b, rdb, ledger.Config{Prefix: fmt.Sprintf("bench%d", min), MinReplicas: min})
		})
	}
}

// benchServe serves purchases on rdb with cfg (pipelined as serve's flags default) and runs
// the selling and sold-out phases over HTTP and gRPC against it.
func benchServe(b *testing.B, rdb redis.UniversalClient, cfg ledger.Config) {
	ctx := context.Background()
	// As serve's flags default: pipelines of up to 16 purchases from 8 senders, 16 partitions.
	cfg.Pipeline, cfg.Senders = 16, 8
	l, err := ledger.Open(ctx, rdb, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.Close)
	reg := prometheus.NewRegistry()
	svc := ingest.NewService(l, nil, map[string]ingest.Check{"redis": l.Ping}, ingest.NewMetrics(reg), slog.New(slog.DiscardHandler))
	hs := httptest.NewServer(svc.Router(reg))
	b.Cleanup(hs.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs, _ := ingest.NewGRPCServer(svc)
	go gs.Serve(ln)
	b.Cleanup(gs.Stop)
	addrs := map[string]string{"http": strings.TrimPrefix(hs.URL, "http://"), "grpc": ln.Addr().String()}

	runs := 0
	for _, phase := range []struct {
		name  string
		stock int64
		want  outcome
	}{{"selling", ledger.MaxStock, outOK}, {"soldout", 0, outSoldOut}} {
		for _, transport := range []string{"http", "grpc"} {
			b.Run(phase.name+"/"+transport, func(b *testing.B) {
				item := "bench-" + phase.name
				if _, err := l.SetStock(ctx, item, ledger.StockChange{Op: ledger.StockSet, Quantity: phase.stock}); err != nil {
					b.Fatal(err)
				}
				runs++
				cfg := config{
					target: transport, addr: addrs[transport], clients: 64, requests: int64(b.N),
					timeout: 5 * time.Second, conns: 2, item: item, quantity: 1, users: 100000,
					runID: fmt.Sprintf("bench%d", runs),
				}
				t, err := dial(cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer t.close()
				b.ResetTimer()
				res := generate(ctx, t, cfg, newProgress(io.Discard, cfg))
				b.StopTimer()
				if got := res.counts[phase.want]; got != res.done {
					b.Fatalf("got %d %v of %d: %v", got, phase.want, res.done, res.counts)
				}
				b.ReportMetric(float64(res.done)/res.elapsed.Seconds(), "req/s")
				b.ReportMetric(float64(res.latency.ValueAtQuantile(99))/1000, "p99-ms")
			})
		}
	}
}
