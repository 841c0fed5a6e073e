package ingest_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ingest/barehttp"
	"github.com/flashsale/flashsale/ledger"
)

// The HTTP purchase path's own cost, without Redis: the production handler (router behind the
// in-flight cap, as serve mounts it) over a ledger that answers at once, next to a bare
// net/http handler that reads, decodes and validates the same body and answers 410 (ingest/barehttp,
// what `loadtest bare` serves). The difference is what routing, body handling, JSON, metrics and
// error mapping cost per request:
//
//	go test -run '^$' -bench HTTPPath -benchmem -count 5 ./ingest
//	go test -run '^$' -bench 'HTTPPath/soldout' -benchmem -cpuprofile /tmp/cpu.out ./ingest
//	go tool pprof -top /tmp/cpu.out

// answerLedger validates a purchase as the ledger does and answers it with err (a receipt
// when err is nil), without Redis.
type answerLedger struct{ err error }

func (a answerLedger) Purchase(_ context.Context, req ledger.PurchaseRequest) (ledger.Receipt, error) {
	if err := req.Validate(); err != nil {
		return ledger.Receipt{}, err
	}
	if a.err != nil {
		return ledger.Receipt{}, a.err
	}
	return ledger.Receipt{OrderID: "3-1732761600123-0", Stock: 41}, nil
}

func (a answerLedger) Item(context.Context, string) (ledger.Item, error) {
	return ledger.Item{}, ledger.ErrUnknownItem
}

// benchWriter is a ResponseWriter that keeps the status and discards the body; its header map
// is emptied between requests, as a server gives each request a fresh one.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// benchBody is a request body that can be rewound without allocating.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

func benchPurchase(b *testing.B, h http.Handler, wantStatus int) {
	b.Helper()
	payload := []byte(`{"request_id":"lt3f9a1c2e-000000123456","user_id":"u4711","item_id":"bench-soldout","quantity":1}`)
	body := &benchBody{}
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/api/purchase", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Body = body
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		body.Reset(payload)
		clear(w.h)
		w.status, w.n = 0, 0
		h.ServeHTTP(w, req)
		if w.status != wantStatus || w.n == 0 {
			b.Fatalf("got status %d with %d bytes, want %d", w.status, w.n, wantStatus)
		}
	}
}

func BenchmarkHTTPPath(b *testing.B) {
	service := func(err error) http.Handler {
		reg := prometheus.NewRegistry()
		svc := ingest.NewService(answerLedger{err}, nil, nil, ingest.NewMetrics(reg), slog.New(slog.DiscardHandler))
		return ingest.DefaultLimits().LimitInFlight(svc.Router(reg), reg)
	}
	b.Run("bare", func(b *testing.B) { benchPurchase(b, barehttp.Handler(), http.StatusGone) })
	b.Run("soldout", func(b *testing.B) { benchPurchase(b, service(ledger.ErrSoldOut), http.StatusGone) })
	b.Run("selling", func(b *testing.B) { benchPurchase(b, service(nil), http.StatusOK) })
	b.Run("duplicate", func(b *testing.B) {
		benchPurchase(b, service(&ledger.DuplicateError{OrderID: "3-1732761600123-0"}), http.StatusConflict)
	})
}
