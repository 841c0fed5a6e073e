// Package ingest is flashsale's front door: the HTTP (gorilla/mux) and gRPC handlers that
// validate requests, ask the ledger, and map its answers to statuses. It holds no state and
// never touches MySQL.
package ingest

import (
	"context"
	"log/slog"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// Ledger is what the handlers need from the ledger.
type Ledger interface {
	Purchase(ctx context.Context, req ledger.PurchaseRequest) (ledger.Receipt, error)
	Item(ctx context.Context, itemID string) (ledger.Item, error)
}

// Orders looks orders up by ID; errors are ledger.ErrUnknownOrder, ledger.ErrInvalid or
// transient ones.
type Orders interface {
	Order(ctx context.Context, orderID string) (ledger.Order, error)
}

// Check is a readiness probe of one dependency.
type Check func(ctx context.Context) error

// Service is the shared core of the HTTP and gRPC handlers.
type Service struct {
	ledger  Ledger
	orders  Orders
	checks  map[string]Check
	auth    *Authenticator // nil: user_id is taken as sent (see RequireAuth)
	http    transportMetrics
	grpc    transportMetrics
	metrics *Metrics
	log     *slog.Logger
}

// NewService returns a Service. orders may be nil: the order routes are then not offered.
// checks are the readiness probes, by name. A ledger with WinnerStats (ledger.Ledger) has its
// sold-out answers counted in m.
func NewService(l Ledger, orders Orders, checks map[string]Check, m *Metrics, log *slog.Logger) *Service {
	if st, ok := l.(soldOutStats); ok {
		m.countSoldOut(st)
	}
	return &Service{
		ledger: l, orders: orders, checks: checks,
		http: m.transport("http"), grpc: m.transport("grpc"), metrics: m,
		log: log.With("component", "ingest"),
	}
}

// purchase asks the ledger and records the metrics in m, its transport's.
func (s *Service) purchase(ctx context.Context, m transportMetrics, req ledger.PurchaseRequest) (ledger.Receipt, error) {
	m.inFlight.Inc()
	start := time.Now()
	rc, err := s.ledger.Purchase(ctx, req)
	m.latency.Observe(time.Since(start).Seconds())
	m.inFlight.Dec()
	m.count(err)
	return rc, err
}

// ready runs every check and returns the failures by name.
func (s *Service) ready(ctx context.Context) map[string]string {
	failed := map[string]string{}
	for name, check := range s.checks {
		if err := check(ctx); err != nil {
			failed[name] = err.Error()
		}
	}
	return failed
}
