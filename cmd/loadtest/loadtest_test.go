package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ingest/barehttp"
	pb "github.com/flashsale/flashsale/proto"
)

// runLoad runs the tool with args and returns its JSON summary and error.
func runLoad(t *testing.T, args ...string) (summary, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append(args, "-json"), func(string) string { return "" }, &out, &errOut)
	var s summary
	if out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), &s); jerr != nil {
			t.Fatalf("summary is not JSON: %v\n%s", jerr, out.String())
		}
	}
	return s, err
}

// fakeShop is a flashsale HTTP API with one item in memory. lie makes it answer 200 without
// selling once the stock is gone: an oversell the tool must catch.
type fakeShop struct {
	mu    sync.Mutex
	item  string
	stock int64
	limit int64
	users map[string]int64
	lie   bool
}

func (f *fakeShop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintln(w, body)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/items/"+f.item:
		f.mu.Lock()
		defer f.mu.Unlock()
		reply(http.StatusOK, fmt.Sprintf(`{"item_id":%q,"stock":%d,"per_user_limit":%d}`, f.item, f.stock, f.limit))
	case r.Method == http.MethodPost && r.URL.Path == "/api/purchase":
		var p struct {
			RequestID string `json:"request_id"`
			UserID    string `json:"user_id"`
			ItemID    string `json:"item_id"`
			Quantity  int64  `json:"quantity"`
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.RequestID == "" || p.UserID == "" {
			reply(http.StatusBadRequest, `{"success":false,"message":"invalid request body"}`)
			return
		}
		if p.ItemID != f.item {
			reply(http.StatusNotFound, `{"success":false,"message":"item not found"}`)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case f.limit > 0 && f.users[p.UserID]+p.Quantity > f.limit:
			reply(http.StatusForbidden, `{"success":false,"message":"purchase limit reached"}`)
		case f.stock >= p.Quantity:
			f.stock -= p.Quantity
			f.users[p.UserID] += p.Quantity
			reply(http.StatusOK, `{"success":true,"message":"order placed successfully","order_id":"0-1-0"}`)
		case f.lie:
			reply(http.StatusOK, `{"success":true,"message":"order placed successfully","order_id":"0-1-0"}`)
		default:
			reply(http.StatusGone, `{"success":false,"message":"sold out"}`)
		}
	default:
		reply(http.StatusNotFound, `{"success":false,"message":"not found"}`)
	}
}

func startShop(t *testing.T, f *fakeShop) string {
	t.Helper()
	f.users = map[string]int64{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestBareHandlerCeiling(t *testing.T) {
	srv := httptest.NewServer(barehttp.Handler())
	defer srv.Close()
	s, err := runLoad(t, "-addr", strings.TrimPrefix(srv.URL, "http://"), "-duration", "1s", "-clients", "8", "-verify=false")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if s.Requests == 0 || s.Outcomes.SoldOut != s.Requests {
		t.Fatalf("got %d requests, %d sold out; want all sold out", s.Requests, s.Outcomes.SoldOut)
	}
	if s.RPS <= 0 || s.Latency.P99 <= 0 || s.Latency.Max < s.Latency.P99 || s.Latency.P50 > s.Latency.P99 {
		t.Fatalf("implausible figures: %.0f req/s, latency %+v", s.RPS, s.Latency)
	}
	if !s.Passed || s.Verify != nil {
		t.Fatalf("got passed %v, verify %+v; want a pass without verification", s.Passed, s.Verify)
	}
}

func TestBareHandlerRejectsBadBodies(t *testing.T) {
	srv := httptest.NewServer(barehttp.Handler())
	defer srv.Close()
	tests := []struct {
		body string
		want int
	}{
		{`{"request_id":"r","user_id":"u","item_id":"demo","quantity":1}`, http.StatusGone},
		{`{"request_id":"r","user_id":"u","item_id":"demo","quantity":1,"x":1}`, http.StatusBadRequest},
		{`{"request_id":"r","user_id":"u","item_id":"de:mo","quantity":1}`, http.StatusBadRequest},
		{`{"request_id":"r","user_id":"u","item_id":"demo","quantity":1}` + strings.Repeat(" ", 5000), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		resp, err := http.Post(srv.URL+"/api/purchase", "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("body %.40q: got %d, want %d", tt.body, resp.StatusCode, tt.want)
		}
	}
}

func TestCountsAndVerifiesASale(t *testing.T) {
	shop := &fakeShop{item: "demo", stock: 100}
	addr := startShop(t, shop)
	s, err := runLoad(t, "-addr", addr, "-requests", "300", "-clients", "16", "-quantity", "2")
	if err != nil {
		t.Fatalf("run: %v (violations %v)", err, s.Violations)
	}
	o := s.Outcomes
	if s.Requests != 300 || o.OK != 50 || o.SoldOut != 250 || o.Transport != 0 {
		t.Fatalf("got %d requests, %+v; want 300 with 50 ok and 250 sold out", s.Requests, o)
	}
	v := s.Verify
	if v == nil || v.StockBefore != 100 || v.StockAfter != 0 || v.Decrease != 100 || v.Acknowledged != 100 {
		t.Fatalf("got verification %+v, want 100 -> 0 with 100 acknowledged", v)
	}
}

func TestDetectsOversell(t *testing.T) {
	shop := &fakeShop{item: "demo", stock: 20, lie: true}
	addr := startShop(t, shop)
	s, err := runLoad(t, "-addr", addr, "-requests", "50", "-clients", "4")
	if exitCode(err) != 1 {
		t.Fatalf("got exit %d (%v), want 1", exitCode(err), err)
	}
	if s.Passed || len(s.Violations) == 0 || !strings.Contains(s.Violations[0], "oversell") {
		t.Fatalf("got violations %q, want an oversell", s.Violations)
	}
	if s.Outcomes.OK != 50 || s.Verify.Decrease != 20 {
		t.Fatalf("got %d ok and a decrease of %d, want 50 and 20", s.Outcomes.OK, s.Verify.Decrease)
	}
}

func TestVerifyStock(t *testing.T) {
	cfg := config{item: "demo", quantity: 1}
	with := func(pairs ...any) counts {
		var c counts
		for i := 0; i < len(pairs); i += 2 {
			c[pairs[i].(outcome)] = int64(pairs[i+1].(int))
		}
		return c
	}
	tests := []struct {
		name          string
		c             counts
		before, after int64
		want          string // "" = clean
	}{
		{"exact", with(outOK, 10, outSoldOut, 5), 10, 0, ""},
		{"oversell", with(outOK, 11), 10, 0, "oversell"},
		{"negative stock", with(outOK, 12), 10, -2, "negative stock"},
		{"sale nobody heard of", with(outOK, 8), 10, 0, "unacknowledged"},
		{"lost replies explain it", with(outOK, 8, outTransport, 2), 10, 0, ""},
		{"503 may hide a sale", with(outOK, 9, outUnavailable, 1), 10, 0, ""},
		{"sold out with stock left", with(outOK, 1, outSoldOut, 3), 10, 9, "sold-out replies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verifyStock(cfg, tt.c, tt.before, tt.after)
			got := strings.Join(v.violations, "; ")
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("got violations %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOpenLoopSendsOnSchedule(t *testing.T) {
	shop := &fakeShop{item: "demo", stock: 1_000_000, limit: 1_000_000}
	addr := startShop(t, shop)
	s, err := runLoad(t, "-addr", addr, "-rate", "400", "-duration", "500ms", "-clients", "8", "-users", "5")
	if err != nil {
		t.Fatalf("run: %v (violations %v)", err, s.Violations)
	}
	if s.Mode != "open" || s.Requests != 200 || s.Outcomes.OK != 200 || s.Missed != 0 {
		t.Fatalf("got mode %s, %d requests (%d ok, %d missed); want open, 200 ok", s.Mode, s.Requests, s.Outcomes.OK, s.Missed)
	}
	if s.ElapsedS < 0.45 {
		t.Fatalf("200 sends at 400/s took %.2f s, want about 0.5 s", s.ElapsedS)
	}
}

func TestPerUserLimitAndClassification(t *testing.T) {
	shop := &fakeShop{item: "demo", stock: 1000, limit: 2}
	addr := startShop(t, shop)
	s, err := runLoad(t, "-addr", addr, "-requests", "100", "-clients", "4", "-users", "3")
	if err != nil {
		t.Fatalf("run: %v (violations %v)", err, s.Violations)
	}
	if s.Outcomes.OK != 6 || s.Outcomes.Limit != 94 {
		t.Fatalf("got %+v, want 6 ok (3 users x limit 2) and 94 limit", s.Outcomes)
	}
	tests := []struct {
		status int
		body   string
		want   outcome
	}{
		{200, `{"success":true,"order_id":"1-2-0"}`, outOK},
		{200, `{"success":false}`, outOther},
		{403, `{"success":false,"message":"sale has ended"}`, outClosed},
		{403, `{"success":false,"message":"purchase limit reached"}`, outLimit},
		{404, ``, outNotFound},
		{409, ``, outDuplicate},
		{413, ``, outBadRequest},
		{503, ``, outUnavailable},
		{500, ``, outOther},
	}
	for _, tt := range tests {
		if got := classifyHTTP(tt.status, []byte(tt.body)); got != tt.want {
			t.Errorf("%d %s: got %v, want %v", tt.status, tt.body, got, tt.want)
		}
	}
}

func TestUnknownItemCannotBeVerified(t *testing.T) {
	addr := startShop(t, &fakeShop{item: "demo", stock: 1})
	_, err := runLoad(t, "-addr", addr, "-item", "other", "-requests", "1")
	if exitCode(err) != 2 {
		t.Fatalf("got exit %d (%v), want 2", exitCode(err), err)
	}
}

func TestAudit(t *testing.T) {
	addr := startShop(t, &fakeShop{item: "demo", stock: 5})
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	argsFile := filepath.Join(dir, "args")
	clean := script("clean", `echo "$@" > `+argsFile)
	dirty := script("dirty", `echo "1 violation(s)"; exit 1`)

	s, err := runLoad(t, "-addr", addr, "-requests", "3", "-audit-redis", "127.0.0.1:1", "-audit-mysql", "dsn", "-prefix", "px", "-flashsale", clean)
	if err != nil || s.Audit == nil || !s.Audit.Passed {
		t.Fatalf("clean audit: got %v, %+v", err, s.Audit)
	}
	got, _ := os.ReadFile(argsFile)
	if want := "audit -redis 127.0.0.1:1 -mysql dsn -prefix px\n"; string(got) != want {
		t.Fatalf("audit args: got %q, want %q", got, want)
	}
	s, err = runLoad(t, "-addr", addr, "-requests", "3", "-audit-redis", "127.0.0.1:1", "-audit-mysql", "dsn", "-flashsale", dirty)
	if exitCode(err) != 1 || s.Audit == nil || s.Audit.ExitCode != 1 || !strings.Contains(s.Audit.Output, "violation") {
		t.Fatalf("failing audit: got exit %d (%v), %+v", exitCode(err), err, s.Audit)
	}
}

// fakeOrders is OrderService with one item in memory.
type fakeOrders struct {
	pb.UnimplementedOrderServiceServer
	mu    sync.Mutex
	stock int64
}

func (f *fakeOrders) Purchase(_ context.Context, in *pb.PurchaseRequest) (*pb.PurchaseResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stock < int64(in.GetQuantity()) {
		return nil, status.Error(codes.ResourceExhausted, "sold out")
	}
	f.stock -= int64(in.GetQuantity())
	return &pb.PurchaseResponse{Success: true, Message: "order placed successfully", OrderId: "0-1-0"}, nil
}

func (f *fakeOrders) GetItem(_ context.Context, in *pb.GetItemRequest) (*pb.Item, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &pb.Item{ItemId: in.GetItemId(), Stock: f.stock}, nil
}

func TestGRPCTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterOrderServiceServer(srv, &fakeOrders{stock: 40})
	go srv.Serve(ln)
	defer srv.Stop()
	s, err := runLoad(t, "-target", "grpc", "-addr", ln.Addr().String(), "-requests", "100", "-clients", "8", "-conns", "2")
	if err != nil {
		t.Fatalf("run: %v (violations %v)", err, s.Violations)
	}
	if s.Outcomes.OK != 40 || s.Outcomes.SoldOut != 60 || s.Verify.Decrease != 40 {
		t.Fatalf("got %+v, verify %+v; want 40 ok, 60 sold out", s.Outcomes, s.Verify)
	}
	tests := []struct {
		err  error
		want outcome
	}{
		{status.Error(codes.AlreadyExists, "duplicate request: order_id 1-2-0"), outDuplicate},
		{status.Error(codes.FailedPrecondition, "purchase limit reached"), outLimit},
		{status.Error(codes.FailedPrecondition, "sale has not started"), outClosed},
		{status.Error(codes.Unavailable, "service unavailable, retry with the same request_id"), outUnavailable},
		{status.Error(codes.Unavailable, "connection error: connection refused"), outTransport},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), outTransport},
		{status.Error(codes.Internal, "internal error"), outOther},
	}
	for _, tt := range tests {
		if got := classifyGRPC(tt.err); got != tt.want {
			t.Errorf("%v: got %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"-h"}, 0},
		{[]string{"-target", "ftp"}, 2},
		{[]string{"-addr", "10.0.0.1:80"}, 2},
		{[]string{"-duration", "0"}, 2},
		{[]string{"-audit-redis", "127.0.0.1:6379"}, 2},
		{[]string{"-addr", "127.0.0.1:1", "-requests", "1"}, 2}, // nothing listens: the stock cannot be read
		{[]string{"bare", "-addr", "nonsense"}, 2},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tt.args, func(string) string { return "" }, &out, &errOut)
		if got := exitCode(err); got != tt.code {
			t.Errorf("%v: got exit %d (%v), want %d", tt.args, got, err, tt.code)
		}
	}
}
