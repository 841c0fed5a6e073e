package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
	"github.com/flashsale/flashsale/tests/testenv"
)

// env is one test's world: its own redis-server, a ledger on it and an ingest Service.
type env struct {
	redis *testenv.Redis
	rdb   *redis.Client
	l     *ledger.Ledger
	svc   *ingest.Service
	reg   *prometheus.Registry
	// metrics and log are svc's, for the board (admin.Options).
	metrics *ingest.Metrics
	log     *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv, rdb := testenv.StartRedis(t)
	return newEnvWith(t, srv, rdb, rdb)
}

// newEnvOn is newEnv on topology tp; redis and rdb are set on the single topology only.
func newEnvOn(t *testing.T, tp testenv.Topology) *env {
	t.Helper()
	if tp == testenv.Single {
		return newEnv(t)
	}
	return newEnvWith(t, nil, nil, testenv.Start(t, tp).Client)
}

// forTopologies runs test on every topology (only the single one with -short).
func forTopologies(t *testing.T, test func(t *testing.T, tp testenv.Topology)) {
	for _, tp := range testenv.Topologies {
		if testing.Short() && tp != testenv.Single {
			continue
		}
		t.Run(string(tp), func(t *testing.T) { test(t, tp) })
	}
}

func newEnvWith(t *testing.T, srv *testenv.Redis, rdb *redis.Client, client redis.UniversalClient) *env {
	t.Helper()
	l, err := ledger.Open(context.Background(), client, ledger.Config{})
	if err != nil {
		t.Fatalf("open ledger: %v", err)
	}
	reg := prometheus.NewRegistry()
	m := ingest.NewMetrics(reg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := ingest.NewService(l, nil, map[string]ingest.Check{"redis": l.Ping}, m, log)
	return &env{redis: srv, rdb: rdb, l: l, svc: svc, reg: reg, metrics: m, log: log}
}

// startHTTP serves the router with the production server settings and returns its base URL
// and a client for it; both are closed by t.Cleanup.
func (e *env) startHTTP(t *testing.T) (string, *http.Client) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = ingest.NewHTTPServer("", e.svc.Router(e.reg))
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL, ts.Client()
}

// startGRPC serves the gRPC server with the default limits on a 127.0.0.1 port and returns a
// connection to it; both are stopped by t.Cleanup.
func (e *env) startGRPC(t *testing.T) *grpc.ClientConn {
	t.Helper()
	addr := e.startGRPCWith(t, ingest.DefaultLimits())
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (e *env) orderClient(t *testing.T) pb.OrderServiceClient {
	t.Helper()
	return pb.NewOrderServiceClient(e.startGRPC(t))
}

func setStock(t *testing.T, l *ledger.Ledger, item string, ch ledger.StockChange) {
	t.Helper()
	if _, err := l.SetStock(context.Background(), item, ch); err != nil {
		t.Fatalf("set stock of %s: %v", item, err)
	}
}

func stockSet(n int64) ledger.StockChange {
	return ledger.StockChange{Op: ledger.StockSet, Quantity: n}
}

func buy(t *testing.T, l *ledger.Ledger, req ledger.PurchaseRequest) ledger.Receipt {
	t.Helper()
	rc, err := l.Purchase(context.Background(), req)
	if err != nil {
		t.Fatalf("purchase %+v: %v", req, err)
	}
	return rc
}

// reply is the JSON body of every purchase reply and error.
type reply struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
	OrderID string `json:"order_id"`
}

// response is one HTTP answer.
type response struct {
	status      int
	contentType string
	body        []byte
}

func purchaseJSON(requestID, userID, itemID string, quantity int64) []byte {
	return fmt.Appendf(nil, `{"request_id":%q,"user_id":%q,"item_id":%q,"quantity":%d}`,
		requestID, userID, itemID, quantity)
}

// send is safe to call from any goroutine.
func send(c *http.Client, method, url string, body []byte) (response, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: b}, nil
}

func mustSend(t *testing.T, c *http.Client, method, url string, body []byte) response {
	t.Helper()
	r, err := send(c, method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// decodeReply decodes a purchase reply, requiring exactly the success and message fields and
// at most an order_id besides.
func decodeReply(r response) (reply, error) {
	if !strings.HasPrefix(r.contentType, "application/json") {
		return reply{}, fmt.Errorf("content type: got %q, want application/json", r.contentType)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &fields); err != nil {
		return reply{}, fmt.Errorf("body %q: %v", r.body, err)
	}
	for _, name := range []string{"success", "message"} {
		if _, ok := fields[name]; !ok {
			return reply{}, fmt.Errorf("body %q: missing %s", r.body, name)
		}
	}
	for name := range fields {
		if name != "success" && name != "message" && name != "order_id" {
			return reply{}, fmt.Errorf("body %q: unexpected field %s", r.body, name)
		}
	}
	var rep reply
	if err := json.Unmarshal(r.body, &rep); err != nil {
		return reply{}, fmt.Errorf("body %q: %v", r.body, err)
	}
	return rep, nil
}

// purchase posts a good purchase and requires a 200 with an order_id.
func purchase(t *testing.T, c *http.Client, base string, requestID, userID, itemID string, quantity int64) string {
	t.Helper()
	r := mustSend(t, c, http.MethodPost, base+"/api/purchase", purchaseJSON(requestID, userID, itemID, quantity))
	rep, err := decodeReply(r)
	if err != nil {
		t.Fatalf("purchase %s: %v", requestID, err)
	}
	if r.status != http.StatusOK || !rep.Success || rep.OrderID == "" {
		t.Fatalf("purchase %s: got %d %s, want 200 with an order_id", requestID, r.status, r.body)
	}
	return rep.OrderID
}

// snapshot returns every key of the Redis with its DUMP.
func snapshot(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatalf("keys: %v", err)
	}
	slices.Sort(keys)
	snap := make(map[string]string, len(keys))
	for _, k := range keys {
		v, err := rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatalf("dump %s: %v", k, err)
		}
		snap[k] = v
	}
	return snap
}

// snapshotDiff reports the keys that differ between two snapshots, sorted.
func snapshotDiff(before, after map[string]string) []string {
	var diff []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			diff = append(diff, "-"+k)
		} else if w != v {
			diff = append(diff, "~"+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			diff = append(diff, "+"+k)
		}
	}
	slices.Sort(diff)
	return diff
}

func assertUnchanged(t *testing.T, rdb *redis.Client, before map[string]string) {
	t.Helper()
	if diff := snapshotDiff(before, snapshot(t, rdb)); len(diff) > 0 {
		t.Errorf("redis changed: got changed keys %v, want none", diff)
	}
}

// orderEvents returns the ledger's order events by order_id, failing on malformed entries.
func orderEvents(t *testing.T, l *ledger.Ledger) map[string]ledger.Event {
	t.Helper()
	orders := map[string]ledger.Event{}
	for _, e := range testenv.Events(t, l) {
		if e.Malformed != nil {
			t.Fatalf("malformed ledger entry %d/%s: %v", e.Partition, e.StreamID, e.Malformed)
		}
		if e.Type == ledger.EventOrder {
			orders[e.OrderID] = e
		}
	}
	return orders
}

// checkLedger requires the ledger's order events to be exactly the acknowledged orders.
func checkLedger(t *testing.T, l *ledger.Ledger, acked map[string]ledger.PurchaseRequest) {
	t.Helper()
	orders := orderEvents(t, l)
	if len(orders) != len(acked) {
		t.Errorf("order events: got %d, want %d", len(orders), len(acked))
	}
	for id, req := range acked {
		e, ok := orders[id]
		if !ok {
			t.Errorf("order %s: acknowledged but not in the ledger", id)
			continue
		}
		got := ledger.PurchaseRequest{RequestID: e.RequestID, UserID: e.UserID, ItemID: e.ItemID, Quantity: e.Quantity}
		if got != req || e.OrderID != id {
			t.Errorf("order %s: got event %+v, want %+v", id, e, req)
		}
	}
}

// sellOut runs the oversell race: buyers concurrent purchases of one unit of "hot" with
// distinct request and user IDs through buy, which returns the order ID of a success, or
// soldOut for a sold-out refusal, or a problem to report. It fails unless exactly stock
// purchases succeeded with distinct order IDs and the rest were sold out, and returns the
// winners by order ID.
func sellOut(t *testing.T, stock, buyers int, buy func(req ledger.PurchaseRequest) (orderID string, soldOut bool, problem string)) map[string]ledger.PurchaseRequest {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		won     = map[string]ledger.PurchaseRequest{}
		soldOut int
	)
	for i := range buyers {
		wg.Go(func() {
			req := ledger.PurchaseRequest{
				RequestID: fmt.Sprintf("req-%d", i), UserID: fmt.Sprintf("user-%d", i), ItemID: "hot", Quantity: 1,
			}
			orderID, out, problem := buy(req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case problem != "":
				t.Errorf("purchase %s: %s", req.RequestID, problem)
			case out:
				soldOut++
			default:
				if prev, dup := won[orderID]; dup {
					t.Errorf("order_id %s: got it for %s and %s, want one order per order_id", orderID, prev.RequestID, req.RequestID)
				}
				won[orderID] = req
			}
		})
	}
	wg.Wait()
	if len(won) != stock || soldOut != buyers-stock {
		t.Fatalf("got %d orders and %d sold out, want %d and %d", len(won), soldOut, stock, buyers-stock)
	}
	return won
}
