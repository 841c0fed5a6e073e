package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ingest/admin"
	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// startAdmin serves the router with the admin routes behind token ("" mounts none).
func (e *env) startAdmin(t *testing.T, token string) (string, *http.Client) {
	t.Helper()
	return e.startBoard(t, admin.Options{Token: token})
}

// startBoard serves the router with the admin routes and the board of o (its ledger and
// group default to the env's) on a free port, with the production server settings, until
// t.Cleanup.
func (e *env) startBoard(t *testing.T, o admin.Options) (string, *http.Client) {
	t.Helper()
	base, _ := e.boardServer(t, "127.0.0.1:0", o)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	return base, c
}

// boardServer is startBoard on addr; stop (also run by t.Cleanup) ends the board's streams
// and shuts the server down, so that another can take the address, as after a restart.
func (e *env) boardServer(t *testing.T, addr string, o admin.Options) (base string, stop func()) {
	t.Helper()
	if o.Ledger == nil {
		o.Ledger = e.l
	}
	if o.Group == "" {
		o.Group = "projector"
	}
	if o.Metrics == nil {
		o.Metrics = e.metrics
	}
	if o.Log == nil {
		o.Log = e.log
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	r := e.svc.Router(e.reg)
	b := admin.Mount(r, o)
	ctx, cancel := context.WithCancel(context.Background())
	boardDone := make(chan struct{})
	go func() {
		defer close(boardDone)
		b.Run(ctx)
	}()
	srv := ingest.NewHTTPServer(addr, r)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-boardDone
			sctx, done := context.WithTimeout(context.Background(), 5*time.Second)
			defer done()
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
			}
			<-served
		})
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func adminDo(t *testing.T, c *http.Client, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	setStock(t, e.l, "a", stockSet(5))
	base, c := e.startAdmin(t, "s3cret")
	off, offc := e.startAdmin(t, "")
	tests := []struct {
		name, base, method, path, token, body string
		c                                     *http.Client
		want                                  int
	}{
		{"pending without token", base, http.MethodGet, "/admin/pending", "", "", c, http.StatusUnauthorized},
		{"pending wrong token", base, http.MethodGet, "/admin/pending", "s3cre", "", c, http.StatusUnauthorized},
		{"put without token", base, http.MethodPut, "/admin/items/a", "", `{"stock":9}`, c, http.StatusUnauthorized},
		{"put wrong token", base, http.MethodPut, "/admin/items/a", "nope", `{"stock":9}`, c, http.StatusUnauthorized},
		{"pending, admin off", off, http.MethodGet, "/admin/pending", "s3cret", "", offc, http.StatusNotFound},
		{"put, admin off", off, http.MethodPut, "/admin/items/a", "s3cret", `{"stock":9}`, offc, http.StatusNotFound},
		{"pending", base, http.MethodGet, "/admin/pending", "s3cret", "", c, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, e.rdb)
			got, body := adminDo(t, tt.c, tt.method, tt.base+tt.path, tt.token, tt.body)
			if got != tt.want {
				t.Fatalf("got %d (%s), want %d", got, body, tt.want)
			}
			assertUnchanged(t, e.rdb, before)
		})
	}
}

func TestAdminPutItem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	setStock(t, e.l, "a", stockSet(5))
	base, c := e.startAdmin(t, "tok")
	tests := []struct {
		name, item, body string
		want             int
		stock, limit     int64
	}{
		{"set", "a", `{"stock":9}`, http.StatusOK, 9, 0},
		{"add with limit", "a", `{"add":-4,"per_user_limit":2}`, http.StatusOK, 5, 2},
		{"window", "a", `{"starts_at":"2026-01-01T00:00:00Z","ends_at":"2036-01-01T00:00:00Z"}`, http.StatusOK, 5, 2},
		{"new item", "b", `{"stock":3}`, http.StatusOK, 3, 0},
		{"pay within", "b", `{"pay_within":"15m"}`, http.StatusOK, 3, 0},
		{"bad pay within", "a", `{"pay_within":"soon"}`, http.StatusBadRequest, 5, 2},
		{"negative pay within", "a", `{"pay_within":"-1s"}`, http.StatusBadRequest, 5, 2},
		{"both stock and add", "a", `{"stock":1,"add":1}`, http.StatusBadRequest, 5, 2},
		{"below zero", "a", `{"add":-6}`, http.StatusConflict, 5, 2},
		{"add to unknown item", "zz", `{"add":1}`, http.StatusNotFound, 0, 0},
		{"negative stock", "a", `{"stock":-1}`, http.StatusBadRequest, 5, 2},
		{"bad time", "a", `{"ends_at":"tomorrow"}`, http.StatusBadRequest, 5, 2},
		{"end before start", "a", `{"starts_at":"2030-01-01T00:00:00Z","ends_at":"2029-01-01T00:00:00Z"}`, http.StatusBadRequest, 5, 2},
		{"start after the end in force", "a", `{"starts_at":"2036-01-01T00:00:01Z"}`, http.StatusBadRequest, 5, 2},
		{"end before the start in force", "a", `{"ends_at":"2025-12-31T23:59:59Z"}`, http.StatusBadRequest, 5, 2},
		{"end before 1970", "a", `{"ends_at":"1969-12-31T23:59:59Z"}`, http.StatusBadRequest, 5, 2},
		{"start at year 1", "a", `{"starts_at":"0001-01-01T00:00:00Z"}`, http.StatusBadRequest, 5, 2},
		{"add past the maximum", "a", `{"add":1000000000}`, http.StatusConflict, 5, 2},
		{"set past the maximum", "a", `{"stock":1000000001}`, http.StatusBadRequest, 5, 2},
		{"unknown field", "a", `{"stok":1}`, http.StatusBadRequest, 5, 2},
		{"bad item id", "a:b", `{"stock":1}`, http.StatusBadRequest, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before map[string]string
			if tt.want != http.StatusOK {
				before = snapshot(t, e.rdb)
			}
			got, body := adminDo(t, c, http.MethodPut, base+"/admin/items/"+tt.item, "tok", tt.body)
			if got != tt.want {
				t.Fatalf("got %d (%s), want %d", got, body, tt.want)
			}
			if tt.want == http.StatusConflict && !bytes.Contains(body, []byte("below zero")) && !bytes.Contains(body, []byte("maximum of 1000000000")) {
				t.Fatalf("body %s does not say which bound", body)
			}
			if tt.want != http.StatusOK {
				assertUnchanged(t, e.rdb, before)
				return
			}
			it, err := e.l.Item(context.Background(), tt.item)
			if err != nil {
				t.Fatal(err)
			}
			if it.Stock != tt.stock || it.Limit != tt.limit {
				t.Fatalf("got stock %d limit %d, want %d and %d", it.Stock, it.Limit, tt.stock, tt.limit)
			}
		})
	}
	// Every change went through the ledger as a stock event.
	stockEvents := 0
	for _, ev := range testenv.Events(t, e.l) {
		if ev.Type == ledger.EventStock {
			stockEvents++
		}
	}
	if stockEvents != 6 {
		t.Fatalf("got %d stock events, want 6 (initial set and five changes)", stockEvents)
	}
	if it, err := e.l.Item(context.Background(), "b"); err != nil || it.PayWithin != 15*time.Minute {
		t.Fatalf("b's pay-within %s (%v), want 15m", it.PayWithin, err)
	}
	// Units given to an item with none: the reply comes once they are on sale, and says when.
	if got, body := adminDo(t, c, http.MethodPut, base+"/admin/items/c", "tok", `{"stock":0}`); got != http.StatusOK || bytes.Contains(body, []byte("reopened_at")) {
		t.Fatalf("set c to 0: got %d %s", got, body)
	}
	got, body := adminDo(t, c, http.MethodPut, base+"/admin/items/c", "tok", `{"add":2}`)
	var reply struct {
		Stock      int64      `json:"stock"`
		ReopenedAt *time.Time `json:"reopened_at"`
	}
	if err := json.Unmarshal(body, &reply); got != http.StatusOK || err != nil || reply.Stock != 2 || reply.ReopenedAt == nil || time.Now().Before(*reply.ReopenedAt) {
		t.Fatalf("add 2 to c: got %d %s (%v), want stock 2 and reopened_at in the past", got, body, err)
	}
	if _, err := e.l.Purchase(context.Background(), ledger.PurchaseRequest{RequestID: "r", UserID: "u", ItemID: "c", Quantity: 1}); err != nil {
		t.Fatalf("purchase after the PUT returned: %v", err)
	}
}

func TestAdminPendingIsTheLedgerReport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	setStock(t, e.l, "a", stockSet(5))
	buy(t, e.l, ledger.PurchaseRequest{RequestID: "r", UserID: "u", ItemID: "a", Quantity: 1})
	p := e.l.Keys().Partition("a")
	if err := e.l.EnsureGroup(ctx, p, "projector"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.ReadGroup(ctx, p, "projector", "stuck", ">", 10, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	base, c := e.startAdmin(t, "tok")
	got, body := adminDo(t, c, http.MethodGet, base+"/admin/pending?item=a&consumer=stuck&limit=10", "tok", "")
	if got != http.StatusOK {
		t.Fatalf("got %d (%s)", got, body)
	}
	var rep ledger.PendingReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Entries) != 2 || rep.Entries[1].Type != "order" || rep.Entries[1].Consumer != "stuck" {
		t.Fatalf("got %+v, want the stock event and the order held by stuck", rep.Entries)
	}
	for _, q := range []string{"limit=0", "limit=x", "min_idle=soon", "item=a:b"} {
		if got, body := adminDo(t, c, http.MethodGet, base+"/admin/pending?"+q, "tok", ""); got != http.StatusBadRequest {
			t.Errorf("%s: got %d (%s), want 400", q, got, body)
		}
	}
}
