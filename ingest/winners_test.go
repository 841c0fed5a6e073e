package ingest_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
	"github.com/flashsale/flashsale/tests/testenv"
)

// purchaseCommands counts the Redis commands of purchases: every command but the winner
// tail's reads (XREAD, XINFO, XRANGE) and the setup of new connections.
type purchaseCommands struct{ n atomic.Int64 }

func (c *purchaseCommands) count(cmd redis.Cmder) {
	switch cmd.Name() {
	case "xread", "xinfo", "xrange", "hello", "client": // the tail's reads, connection setup
	default:
		c.n.Add(1)
	}
}

func (c *purchaseCommands) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *purchaseCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.count(cmd); return next(ctx, cmd) }
}

func (c *purchaseCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// ingestProcess is one `flashsale ingest`: its own Redis client, ledger (pipelined, as
// served), winner tail and Service, stopped by t.Cleanup.
func ingestProcess(t *testing.T, addr string) (*env, *purchaseCommands) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	c := &purchaseCommands{}
	rdb.AddHook(c)
	l, err := ledger.Open(context.Background(), rdb, ledger.Config{Pipeline: 16, Senders: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { l.TailWinners(ctx, nil) })
	t.Cleanup(func() { cancel(); rdb.Close(); wg.Wait(); l.Close() })
	reg := prometheus.NewRegistry()
	svc := ingest.NewService(l, nil, nil, ingest.NewMetrics(reg), slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &env{rdb: rdb, l: l, svc: svc, reg: reg}, c
}

func TestSoldOutAnswersFromTheWinnerIndex(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	a, _ := ingestProcess(t, srv.Addr)
	b, cmds := ingestProcess(t, srv.Addr)
	baseA, clientA := a.startHTTP(t)
	ts := httptest.NewServer(b.svc.Router(b.reg))
	t.Cleanup(ts.Close)
	baseB, clientB := ts.URL, ts.Client()
	grpcB := b.orderClient(t)
	ctx := context.Background()

	// Sold out through a.
	setStock(t, a.l, "a", stockSet(2))
	alice := purchase(t, clientA, baseA, "ra", "alice", "a", 1)
	bob := purchase(t, clientA, baseA, "rb", "bob", "a", 1)
	// b learns the item is sold out from the script once, then from its tail.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		before := b.l.WinnerStats().LocalAnswers
		r := mustSend(t, clientB, http.MethodPost, baseB+"/api/purchase", purchaseJSON(fmt.Sprintf("w%d", i), "carol", "a", 1))
		if r.status != http.StatusGone {
			t.Fatalf("sold out: got %d %s", r.status, r.body)
		}
		if b.l.WinnerStats().LocalAnswers > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no local answer within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	before := cmds.n.Load()
	for _, tt := range []struct {
		req, user string
		status    int
		order     string
		message   string
	}{
		{"ra", "alice", http.StatusConflict, alice, "duplicate request"},
		{"rb", "bob", http.StatusConflict, bob, "duplicate request"},
		{"ra", "mallory", http.StatusConflict, "", "request_id already used"},
		{"new", "dave", http.StatusGone, "", "sold out"},
	} {
		r := mustSend(t, clientB, http.MethodPost, baseB+"/api/purchase", purchaseJSON(tt.req, tt.user, "a", 1))
		rep, err := decodeReply(r)
		if err != nil || r.status != tt.status || rep.OrderID != tt.order || rep.Message != tt.message {
			t.Fatalf("HTTP %s of %s: got %d %s (%v), want %d %q order %q", tt.req, tt.user, r.status, r.body, err, tt.status, tt.message, tt.order)
		}
	}
	for _, tt := range []struct {
		req, user string
		code      codes.Code
		order     string
	}{
		{"ra", "alice", codes.AlreadyExists, alice},
		{"ra", "mallory", codes.AlreadyExists, ""},
		{"new", "dave", codes.ResourceExhausted, ""},
	} {
		_, err := grpcB.Purchase(ctx, &pb.PurchaseRequest{RequestId: tt.req, UserId: tt.user, ItemId: "a", Quantity: 1})
		st := status.Convert(err)
		var got string
		for _, d := range st.Details() {
			if pr, ok := d.(*pb.PurchaseResponse); ok {
				got = pr.GetOrderId()
			}
		}
		if st.Code() != tt.code || got != tt.order || (tt.order == "" && strings.Contains(st.Message(), alice)) {
			t.Fatalf("gRPC %s of %s: got %v (order %q), want %v order %q", tt.req, tt.user, err, got, tt.code, tt.order)
		}
	}
	if n := cmds.n.Load() - before; n != 0 {
		t.Fatalf("%d Redis commands for sold-out answers, want 0", n)
	}
}
