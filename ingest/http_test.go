package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
	"github.com/flashsale/flashsale/tests/testenv"
)

func TestHTTPPurchaseNeverOversells(t *testing.T) {
	t.Parallel()
	forTopologies(t, testHTTPPurchaseNeverOversells)
}

func testHTTPPurchaseNeverOversells(t *testing.T, tp testenv.Topology) {
	e := newEnvOn(t, tp)
	base, c := e.startHTTP(t)
	const stock, buyers = 40, 400
	setStock(t, e.l, "hot", stockSet(stock))

	won := sellOut(t, stock, buyers, func(req ledger.PurchaseRequest) (string, bool, string) {
		r, err := send(c, http.MethodPost, base+"/api/purchase",
			purchaseJSON(req.RequestID, req.UserID, req.ItemID, req.Quantity))
		if err != nil {
			return "", false, err.Error()
		}
		rep, err := decodeReply(r)
		switch {
		case err != nil:
			return "", false, err.Error()
		case r.status == http.StatusOK && rep.Success && rep.OrderID != "":
			return rep.OrderID, false, ""
		case r.status == http.StatusGone && !rep.Success && rep.Message == "sold out":
			return "", true, ""
		}
		return "", false, fmt.Sprintf("got %d %s, want 200 or 410 sold out", r.status, r.body)
	})

	r := mustSend(t, c, http.MethodGet, base+"/api/items/hot", nil)
	var it struct {
		ItemID string `json:"item_id"`
		Stock  *int64 `json:"stock"`
	}
	if err := json.Unmarshal(r.body, &it); err != nil || r.status != http.StatusOK || it.Stock == nil {
		t.Fatalf("GET /api/items/hot: got %d %s (%v), want 200 with a stock", r.status, r.body, err)
	}
	if *it.Stock != 0 || it.ItemID != "hot" {
		t.Errorf("item after sale: got %s stock %d, want hot stock 0", it.ItemID, *it.Stock)
	}
	checkLedger(t, e.l, won)
}

func TestHTTPDuplicateReturnsOriginalOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	setStock(t, e.l, "a", stockSet(5))

	orderID := purchase(t, c, base, "once", "u1", "a", 2)
	before := snapshot(t, e.rdb)
	r := mustSend(t, c, http.MethodPost, base+"/api/purchase", purchaseJSON("once", "u1", "a", 2))
	rep, err := decodeReply(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusConflict || rep.Success || rep.Message != "duplicate request" {
		t.Errorf("second purchase: got %d %s, want 409 duplicate request", r.status, r.body)
	}
	if rep.OrderID != orderID {
		t.Errorf("second purchase order_id: got %q, want %q", rep.OrderID, orderID)
	}
	assertUnchanged(t, e.rdb, before)
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		orderID: {RequestID: "once", UserID: "u1", ItemID: "a", Quantity: 2},
	})
}

func TestHTTPRequestIDOfAnotherUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	setStock(t, e.l, "a", stockSet(5))

	orderID := purchase(t, c, base, "shared", "alice", "a", 2)
	before := snapshot(t, e.rdb)
	r := mustSend(t, c, http.MethodPost, base+"/api/purchase", purchaseJSON("shared", "mallory", "a", 1))
	rep, err := decodeReply(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusConflict || rep.Success || rep.Message != "request_id already used" {
		t.Errorf("other user's purchase: got %d %s, want 409 request_id already used", r.status, r.body)
	}
	if rep.OrderID != "" || strings.Contains(string(r.body), orderID) {
		t.Errorf("other user's purchase: got %s, want no order_id", r.body)
	}
	assertUnchanged(t, e.rdb, before)
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		orderID: {RequestID: "shared", UserID: "alice", ItemID: "a", Quantity: 2},
	})

	m := mustSend(t, c, http.MethodGet, base+"/metrics", nil)
	if want := `flashsale_purchases_total{outcome="request_id_taken",transport="http"} 1`; !strings.Contains(string(m.body), want+"\n") {
		t.Errorf("metrics: got no line %q", want)
	}
}

func TestHTTPSoldOutDoesNotBurnRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	setStock(t, e.l, "a", stockSet(1))

	r := mustSend(t, c, http.MethodPost, base+"/api/purchase", purchaseJSON("later", "u1", "a", 2))
	if r.status != http.StatusGone {
		t.Fatalf("purchase of 2 out of 1: got %d %s, want 410", r.status, r.body)
	}
	setStock(t, e.l, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1})
	orderID := purchase(t, c, base, "later", "u1", "a", 2)
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		orderID: {RequestID: "later", UserID: "u1", ItemID: "a", Quantity: 2},
	})
}

// body returns a purchase body: the good one with fields replaced by set (raw JSON values)
// and the fields in drop left out.
func body(t *testing.T, set map[string]string, drop ...string) []byte {
	t.Helper()
	fields := map[string]json.RawMessage{
		"request_id": json.RawMessage(`"r-fresh"`),
		"user_id":    json.RawMessage(`"u-fresh"`),
		"item_id":    json.RawMessage(`"a"`),
		"quantity":   json.RawMessage(`1`),
	}
	for k, v := range set {
		fields[k] = json.RawMessage(v)
	}
	for _, k := range drop {
		delete(fields, k)
	}
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatalf("build body: %v", err)
	}
	return b
}

func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	limit := int64(1)
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	setStock(t, e.l, "a", stockSet(100))
	setStock(t, e.l, "gone", stockSet(0))
	setStock(t, e.l, "limited", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, Limit: &limit})
	setStock(t, e.l, "early", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, Start: &future})
	setStock(t, e.l, "late", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, End: &past})
	buy(t, e.l, ledger.PurchaseRequest{RequestID: "lim-1", UserID: "u-lim", ItemID: "limited", Quantity: 1})
	dup := buy(t, e.l, ledger.PurchaseRequest{RequestID: "dup-1", UserID: "u-dup", ItemID: "a", Quantity: 1})

	const purchasePath = "/api/purchase"
	type row struct {
		name        string
		method      string
		path        string
		body        []byte
		wantStatus  int
		wantMessage string
		wantOrderID string // "" means none; "*" means any non-empty
	}
	const missing, badQuantity = "missing required fields", "invalid request: quantity must be between 1 and 100"
	tests := []row{
		{"ok", http.MethodPost, purchasePath, body(t, map[string]string{"request_id": `"ok-1"`}), http.StatusOK, "order placed successfully", "*"},
		{"not json", http.MethodPost, purchasePath, []byte("request_id=1"), http.StatusBadRequest, "invalid request body", ""},
		{"truncated json", http.MethodPost, purchasePath, []byte(`{"request_id":"r","user_id":`), http.StatusBadRequest, "invalid request body", ""},
	}
	for _, f := range []string{"request_id", "user_id", "item_id"} {
		tests = append(tests,
			row{f + " missing", http.MethodPost, purchasePath, body(t, nil, f), http.StatusBadRequest, missing, ""},
			row{f + " null", http.MethodPost, purchasePath, body(t, map[string]string{f: "null"}), http.StatusBadRequest, missing, ""},
			row{f + " empty", http.MethodPost, purchasePath, body(t, map[string]string{f: `""`}), http.StatusBadRequest, missing, ""},
		)
	}
	tests = append(tests, []row{
		{"quantity missing", http.MethodPost, purchasePath, body(t, nil, "quantity"), http.StatusBadRequest, missing, ""},
		{"quantity null", http.MethodPost, purchasePath, body(t, map[string]string{"quantity": "null"}), http.StatusBadRequest, missing, ""},
		{"quantity 0", http.MethodPost, purchasePath, body(t, map[string]string{"quantity": "0"}), http.StatusBadRequest, missing, ""},
		{"all fields missing", http.MethodPost, purchasePath, []byte(`{}`), http.StatusBadRequest, missing, ""},
		{"quantity -1", http.MethodPost, purchasePath, body(t, map[string]string{"quantity": "-1"}), http.StatusBadRequest, badQuantity, ""},
		{"quantity 101", http.MethodPost, purchasePath, body(t, map[string]string{"quantity": "101"}), http.StatusBadRequest, badQuantity, ""},
		{"quantity 1.5", http.MethodPost, purchasePath, body(t, map[string]string{"quantity": "1.5"}), http.StatusBadRequest, "invalid request body", ""},
		{"quantity string", http.MethodPost, purchasePath, body(t, map[string]string{"quantity": `"1"`}), http.StatusBadRequest, "invalid request body", ""},
		{"quantity 1e20", http.MethodPost, purchasePath, body(t, map[string]string{"quantity": "1e20"}), http.StatusBadRequest, "invalid request body", ""},
		{"unknown item", http.MethodPost, purchasePath, body(t, map[string]string{"item_id": `"nope"`}), http.StatusNotFound, "item not found", ""},
		{"unknown item lookup", http.MethodGet, "/api/items/nope", nil, http.StatusNotFound, "item not found", ""},
		{"limit reached", http.MethodPost, purchasePath, body(t, map[string]string{"user_id": `"u-lim"`, "item_id": `"limited"`}), http.StatusForbidden, "purchase limit reached", ""},
		{"not started", http.MethodPost, purchasePath, body(t, map[string]string{"item_id": `"early"`}), http.StatusForbidden, "sale has not started", ""},
		{"ended", http.MethodPost, purchasePath, body(t, map[string]string{"item_id": `"late"`}), http.StatusForbidden, "sale has ended", ""},
		{"duplicate", http.MethodPost, purchasePath, body(t, map[string]string{"request_id": `"dup-1"`, "user_id": `"u-dup"`}), http.StatusConflict, "duplicate request", dup.OrderID},
		{"sold out", http.MethodPost, purchasePath, body(t, map[string]string{"item_id": `"gone"`}), http.StatusGone, "sold out", ""},
		{"GET purchase", http.MethodGet, purchasePath, nil, http.StatusMethodNotAllowed, "method not allowed", ""},
		{"PUT purchase", http.MethodPut, purchasePath, body(t, nil), http.StatusMethodNotAllowed, "method not allowed", ""},
		{"DELETE purchase", http.MethodDelete, purchasePath, nil, http.StatusMethodNotAllowed, "method not allowed", ""},
		{"unknown path", http.MethodPost, "/api/purchases", body(t, nil), http.StatusNotFound, "not found", ""},
		{"body too large", http.MethodPost, purchasePath,
			body(t, map[string]string{"user_id": `"` + strings.Repeat("u", ingest.MaxBodyBytes) + `"`}),
			http.StatusRequestEntityTooLarge, "request body too large", ""},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, e.rdb)
			r := mustSend(t, c, tt.method, base+tt.path, tt.body)
			rep, err := decodeReply(r)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.wantStatus {
				t.Errorf("status: got %d (%s), want %d", r.status, r.body, tt.wantStatus)
			}
			if rep.Message != tt.wantMessage {
				t.Errorf("message: got %q, want %q", rep.Message, tt.wantMessage)
			}
			if want := tt.wantStatus == http.StatusOK; rep.Success != want {
				t.Errorf("success: got %t, want %t", rep.Success, want)
			}
			switch {
			case tt.wantOrderID == "*" && rep.OrderID == "":
				t.Errorf("order_id: got none, want one")
			case tt.wantOrderID != "*" && rep.OrderID != tt.wantOrderID:
				t.Errorf("order_id: got %q, want %q", rep.OrderID, tt.wantOrderID)
			}
			if tt.wantStatus != http.StatusOK {
				assertUnchanged(t, e.rdb, before)
			}
		})
	}
}

func TestHTTPHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	setStock(t, e.l, "a", stockSet(1000))
	good := string(purchaseJSON("r-good", "u-good", "a", 1))
	tests := []struct {
		name       string
		body       string
		wantStatus int // 0 means 400
	}{
		{"deeply nested array", strings.Repeat("[", 1000) + strings.Repeat("]", 1000), 0},
		// 1000 levels of {"a": do not fit in MaxBodyBytes; 600 do.
		{"deeply nested object", strings.Repeat(`{"a":`, 1000) + "1" + strings.Repeat("}", 1000), http.StatusRequestEntityTooLarge},
		{"nested object under the size limit", strings.Repeat(`{"a":`, 600) + "1" + strings.Repeat("}", 600), 0},
		{"deeply nested field", `{"request_id":"r","user_id":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `,"item_id":"a","quantity":1}`, 0},
		{"two objects", good + good, 0},
		{"trailing garbage", good + " x", 0},
		{"trailing bracket", good + "}", 0},
		{"array", "[" + good + "]", 0},
		{"bare string", `"buy"`, 0},
		{"bare number", `1`, 0},
		{"null", `null`, 0},
		{"empty body", ``, 0},
		{"whitespace body", " \n\t", 0},
		{"unknown field", `{"request_id":"r","user_id":"u","item_id":"a","quantity":1,"price":0}`, 0},
		{"key in other case", `{"REQUEST_ID":"r","user_id":"u","item_id":"a","quantity":1}`, 0},
		{"duplicate key", `{"request_id":"r","request_id":"s","user_id":"u","item_id":"a","quantity":1}`, 0},
		{"request_id number", `{"request_id":1,"user_id":"u","item_id":"a","quantity":1}`, 0},
		{"user_id object", `{"request_id":"r","user_id":{"id":"u"},"item_id":"a","quantity":1}`, 0},
		{"item_id array", `{"request_id":"r","user_id":"u","item_id":["a"],"quantity":1}`, 0},
		{"quantity bool", `{"request_id":"r","user_id":"u","item_id":"a","quantity":true}`, 0},
		{"request_id 129 bytes", string(purchaseJSON(strings.Repeat("r", 129), "u", "a", 1)), 0},
		{"request_id 129 bytes in 43 runes", string(purchaseJSON(strings.Repeat("€", 43), "u", "a", 1)), 0},
		{"user_id 129 bytes", string(purchaseJSON("r", strings.Repeat("u", 129), "a", 1)), 0},
		{"item_id 65 chars", string(purchaseJSON("r", "u", strings.Repeat("a", 65), 1)), 0},
		{"item_id with colon", string(purchaseJSON("r", "u", "a:b", 1)), 0},
		{"item_id with brace", string(purchaseJSON("r", "u", "a{p0}", 1)), 0},
		{"item_id with space", string(purchaseJSON("r", "u", "a b", 1)), 0},
		{"user_id not utf-8", "{\"request_id\":\"r-utf8-user\",\"user_id\":\"u\xff\",\"item_id\":\"a\",\"quantity\":1}", 0},
		{"request_id not utf-8", "{\"request_id\":\"r-utf8\xc3\x28\",\"user_id\":\"u\",\"item_id\":\"a\",\"quantity\":1}", 0},
		{"user_id lone surrogate", `{"request_id":"r-surrogate","user_id":"u\ud800","item_id":"a","quantity":1}`, 0},
		{"user_id raw control character", "{\"request_id\":\"r\",\"user_id\":\"u\x01\",\"item_id\":\"a\",\"quantity\":1}", 0},
		{"user_id escaped control character", `{"request_id":"r","user_id":"u\u0001","item_id":"a","quantity":1}`, 0},
		{"request_id escaped newline", `{"request_id":"r\n","user_id":"u","item_id":"a","quantity":1}`, 0},
		{"user_id NUL", `{"request_id":"r","user_id":"u\u0000","item_id":"a","quantity":1}`, 0},
		{"user_id C1 control", `{"request_id":"r","user_id":"u\u0085","item_id":"a","quantity":1}`, 0},
		{"user_id DEL", `{"request_id":"r","user_id":"u\u007f","item_id":"a","quantity":1}`, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, e.rdb)
			r := mustSend(t, c, http.MethodPost, base+"/api/purchase", []byte(tt.body))
			rep, err := decodeReply(r)
			if err != nil {
				t.Error(err)
			}
			want := tt.wantStatus
			if want == 0 {
				want = http.StatusBadRequest
			}
			if r.status != want || rep.Success || rep.Message == "" {
				t.Errorf("got %d %s, want %d with a message", r.status, r.body, want)
			}
			assertUnchanged(t, e.rdb, before)
			purchase(t, c, base, fmt.Sprintf("after-%d", i), "u-after", "a", 1)
		})
	}
}

func TestHTTPSlowHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := ingest.NewHTTPServer("127.0.0.1:0", e.svc.Router(e.reg))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: got %v, want %v", err, http.ErrServerClosed)
		}
	})

	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write([]byte("POST /api/purch")); err != nil {
		t.Fatalf("write: %v", err)
	}
	const within = 8 * time.Second
	conn.SetReadDeadline(start.Add(within))
	_, err = io.Copy(io.Discard, conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %s, want closed within %s (ReadHeaderTimeout %s)", time.Since(start).Round(time.Millisecond), within, srv.ReadHeaderTimeout)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read: got %v, want the server to close the connection", err)
	}
	if took := time.Since(start); took < srv.ReadHeaderTimeout-time.Second {
		t.Errorf("closed after %s, want after about ReadHeaderTimeout %s", took, srv.ReadHeaderTimeout)
	}
}

func TestHTTPItem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	limit := int64(2)
	start, end := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli()), time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	setStock(t, e.l, "windowed", ledger.StockChange{Op: ledger.StockSet, Quantity: 7, Limit: &limit, Start: &start, End: &end})
	setStock(t, e.l, "open", stockSet(3))

	type item struct {
		ItemID       string     `json:"item_id"`
		Stock        int64      `json:"stock"`
		PerUserLimit int64      `json:"per_user_limit"`
		StartsAt     *time.Time `json:"starts_at"`
		EndsAt       *time.Time `json:"ends_at"`
	}
	tests := []struct {
		item             string
		wantStock        int64
		wantLimit        int64
		wantStart, wantE *time.Time
	}{
		{"windowed", 7, 2, &start, &end},
		{"open", 3, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.item, func(t *testing.T) {
			r := mustSend(t, c, http.MethodGet, base+"/api/items/"+tt.item, nil)
			var got item
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != http.StatusOK {
				t.Fatalf("got %d %s (%v), want 200", r.status, r.body, err)
			}
			if got.ItemID != tt.item || got.Stock != tt.wantStock || got.PerUserLimit != tt.wantLimit {
				t.Errorf("got %s stock %d limit %d, want %s stock %d limit %d", got.ItemID, got.Stock, got.PerUserLimit, tt.item, tt.wantStock, tt.wantLimit)
			}
			if !sameTime(got.StartsAt, tt.wantStart) || !sameTime(got.EndsAt, tt.wantE) {
				t.Errorf("window: got %v..%v, want %v..%v", got.StartsAt, got.EndsAt, tt.wantStart, tt.wantE)
			}
		})
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	client := e.orderClient(t)
	ctx := context.Background()
	// With everysec Redis may hold acknowledged writes in its AOF buffer for up to 2 s, which
	// a SIGKILL loses; this test is about the service, so every write reaches the file first.
	if err := e.rdb.ConfigSet(ctx, "appendfsync", "always").Err(); err != nil {
		t.Fatalf("config set appendfsync: %v", err)
	}
	const initial = 10
	setStock(t, e.l, "a", stockSet(initial))
	acked := map[string]ledger.PurchaseRequest{}
	first := purchase(t, c, base, "before", "u1", "a", 1)
	acked[first] = ledger.PurchaseRequest{RequestID: "before", UserID: "u1", ItemID: "a", Quantity: 1}

	e.redis.Kill()
	r := mustSend(t, c, http.MethodPost, base+"/api/purchase", purchaseJSON("during", "u2", "a", 2))
	rep, err := decodeReply(r)
	if err != nil {
		t.Error(err)
	}
	if r.status != http.StatusServiceUnavailable || rep.Success {
		t.Errorf("HTTP purchase with Redis down: got %d %s, want 503 with success false", r.status, r.body)
	}
	_, err = client.Purchase(ctx, &pb.PurchaseRequest{RequestId: "during-grpc", UserId: "u3", ItemId: "a", Quantity: 3})
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("gRPC purchase with Redis down: got %v (%v), want %v", got, err, codes.Unavailable)
	}
	if r := mustSend(t, c, http.MethodGet, base+"/ready", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("GET /ready with Redis down: got %d %s, want 503", r.status, r.body)
	}
	if r := mustSend(t, c, http.MethodGet, base+"/health", nil); r.status != http.StatusOK {
		t.Errorf("GET /health with Redis down: got %d %s, want 200", r.status, r.body)
	}

	if err := e.redis.Start(); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	if r := mustSend(t, c, http.MethodGet, base+"/ready", nil); r.status != http.StatusOK {
		t.Errorf("GET /ready after restart: got %d %s, want 200", r.status, r.body)
	}
	// The refused attempts are retried with the same request_ids: nothing of them was kept.
	id := purchase(t, c, base, "during", "u2", "a", 2)
	acked[id] = ledger.PurchaseRequest{RequestID: "during", UserID: "u2", ItemID: "a", Quantity: 2}
	resp, err := client.Purchase(ctx, &pb.PurchaseRequest{RequestId: "during-grpc", UserId: "u3", ItemId: "a", Quantity: 3})
	if err != nil {
		t.Fatalf("gRPC purchase after restart: %v", err)
	}
	acked[resp.GetOrderId()] = ledger.PurchaseRequest{RequestID: "during-grpc", UserID: "u3", ItemID: "a", Quantity: 3}

	it, err := e.l.Item(ctx, "a")
	if err != nil {
		t.Fatalf("item: %v", err)
	}
	if want := int64(initial - 1 - 2 - 3); it.Stock != want {
		t.Errorf("stock after restart: got %d, want %d", it.Stock, want)
	}
	var sold int64
	for _, o := range orderEvents(t, e.l) {
		sold += o.Quantity
	}
	if it.Stock+sold != initial {
		t.Errorf("stock %d + ordered %d: got %d, want %d", it.Stock, sold, it.Stock+sold, initial)
	}
	checkLedger(t, e.l, acked)
}

func TestHTTPMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	setStock(t, e.l, "a", stockSet(1))
	purchase(t, c, base, "m-1", "u1", "a", 1)
	if r := mustSend(t, c, http.MethodPost, base+"/api/purchase", purchaseJSON("m-2", "u2", "a", 1)); r.status != http.StatusGone {
		t.Fatalf("second purchase: got %d %s, want 410", r.status, r.body)
	}

	r := mustSend(t, c, http.MethodGet, base+"/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: got %d, want 200", r.status)
	}
	tests := []struct {
		name string
		want string
	}{
		{"ok", `flashsale_purchases_total{outcome="ok",transport="http"} 1`},
		{"sold out", `flashsale_purchases_total{outcome="sold_out",transport="http"} 1`},
		{"latency", `flashsale_purchase_duration_seconds_count{transport="http"} 2`},
		{"latency bucket", `flashsale_purchase_duration_seconds_bucket{transport="http",le="+Inf"} 2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(r.body), tt.want+"\n") {
				t.Errorf("metrics: got no line %q in\n%s", tt.want, r.body)
			}
		})
	}
}

func TestHTTPMethodNotAllowedSaysAllow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	tests := []struct {
		method, path, want string
	}{
		{http.MethodGet, "/api/purchase", "POST"},
		{http.MethodPost, "/api/items/a", "GET"},
		{http.MethodDelete, "/health", "GET"},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, base+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tt.want {
			t.Errorf("%s %s: got %d Allow %q, want 405 Allow %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), tt.want)
		}
	}
}
