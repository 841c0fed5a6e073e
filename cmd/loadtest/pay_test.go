package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// TestPayFractionResellsUnpaidUnits sells an item whose orders must be paid within 300 ms to
// a load in which 70% of the winners pay, over HTTP and gRPC, with two sweepers running: every
// unpaid unit is resold or back in stock, the stock falls by exactly the paid units, and the
// ledger's events fold to the counter with each unpaid order expired once.
func TestPayFractionResellsUnpaidUnits(t *testing.T) {
	ctx, l, svc, hs := startIngest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs, _ := ingest.NewGRPCServer(svc)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	for range 2 {
		s := l.NewSweeper(20*time.Millisecond, 50, slog.New(slog.NewTextHandler(io.Discard, nil)))
		go func() { s.Run(sctx); done <- struct{}{} }()
	}
	t.Cleanup(func() { stop(); <-done; <-done })

	within := 300 * time.Millisecond
	const stock = 40
	for _, transport := range []string{"http", "grpc"} {
		item := "pay-" + transport
		if _, err := l.SetStock(ctx, item, ledger.StockChange{Op: ledger.StockSet, Quantity: stock, PayWithin: &within}); err != nil {
			t.Fatal(err)
		}
		addr := strings.TrimPrefix(hs.URL, "http://")
		if transport == "grpc" {
			addr = ln.Addr().String()
		}
		s, err := runLoad(t, "-target", transport, "-addr", addr, "-item", item, "-rate", "400", "-duration", "1500ms",
			"-clients", "8", "-users", "1000000", "-pay", "0.7", "-settle", "10s")
		if err != nil || !s.Passed || s.Payments == nil {
			t.Fatalf("%s: %v: %+v", transport, err, s)
		}
		p := s.Payments
		if p.Unpaid == 0 || p.Paid == 0 || s.Outcomes.OK <= stock {
			t.Fatalf("%s: want paid and unpaid winners and units resold: %d ok, %+v", transport, s.Outcomes.OK, *p)
		}
		t.Logf("%s: %d ok of %d requests, paid %d, late %d, unpaid %d; stock %d -> %d, settled in %.2f s",
			transport, s.Outcomes.OK, s.Requests, p.Paid, p.Late, p.Unpaid, s.Verify.StockBefore, s.Verify.StockAfter, p.SettledS)

		// The ledger agrees: the events fold to the counter, no order is still reserved, and
		// each order that was not paid expired exactly once.
		var tally ledger.Tally
		expired := map[string]int{}
		var orders []string
		for _, e := range testenv.Events(t, l) {
			if e.ItemID != item {
				continue
			}
			tally.Apply(e)
			switch e.Type {
			case ledger.EventOrder:
				orders = append(orders, e.OrderID)
			case ledger.EventExpired:
				expired[e.OrderID]++
			}
		}
		it, err := l.Item(ctx, item)
		if err != nil || tally.Stock != it.Stock || it.Stock != stock-p.Paid {
			t.Fatalf("%s: fold %d, counter %d (%v), want %d", transport, tally.Stock, it.Stock, err, stock-p.Paid)
		}
		var nPaid int64
		for _, id := range orders {
			r, err := l.Reservation(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case r.State == ledger.StatePaid && expired[id] == 0:
				nPaid++
			case r.State == ledger.StateExpired && expired[id] == 1:
			default:
				t.Fatalf("%s: order %s %s, expired %d times", transport, id, r.State, expired[id])
			}
		}
		if nPaid != p.Paid {
			t.Fatalf("%s: %d orders paid in the ledger, the client paid %d", transport, nPaid, p.Paid)
		}
	}
}

// startIngest opens a ledger on a Redis of the test's own and serves ingest's HTTP API on it.
func startIngest(t *testing.T) (context.Context, *ledger.Ledger, *ingest.Service, *httptest.Server) {
	t.Helper()
	_, rdb := testenv.StartRedis(t)
	ctx := context.Background()
	l, err := ledger.Open(ctx, rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc := ingest.NewService(l, nil, nil, ingest.NewMetrics(reg), slog.New(slog.DiscardHandler))
	hs := httptest.NewServer(svc.Router(reg))
	t.Cleanup(hs.Close)
	return ctx, l, svc, hs
}
