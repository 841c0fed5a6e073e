package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	pb "github.com/flashsale/flashsale/proto"
	"github.com/flashsale/flashsale/tests/testenv"
)

// lookup serves ingest's order routes from the projector's Lookup, as serve does.
type lookup struct{ *projector.Lookup }

func (l lookup) Order(ctx context.Context, id string) (ledger.Order, error) {
	o, err := l.Lookup.Order(ctx, id)
	return ledger.Order(o), err
}

// syncBuffer is a log sink safe for the handlers' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// orderFixture is an env whose Service looks orders up in MySQL and the ledger, with one
// order cancelled in MySQL and one pending (in the ledger only), and the service's error log.
type orderFixture struct {
	*env
	cancelled, pending string
	errors             *syncBuffer
}

func newOrderFixture(t *testing.T) orderFixture {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t)
	_, db := testenv.MySQL(t)
	if _, err := projector.Migrate(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	setStock(t, e.l, "a", stockSet(10))
	cancelled := buy(t, e.l, ledger.PurchaseRequest{RequestID: "r1", UserID: "u1", ItemID: "a", Quantity: 1}).OrderID
	ev, err := e.l.Order(ctx, cancelled)
	if err != nil {
		t.Fatalf("read order %s: %v", cancelled, err)
	}
	if _, err := e.l.Restock(ctx, ev, "test"); err != nil {
		t.Fatalf("restock %s: %v", cancelled, err)
	}
	store := projector.NewStore(db)
	if _, err := store.Apply(ctx, testenv.Events(t, e.l)); err != nil {
		t.Fatalf("project: %v", err)
	}
	pending := buy(t, e.l, ledger.PurchaseRequest{RequestID: "r2", UserID: "u2", ItemID: "a", Quantity: 2}).OrderID

	errs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(errs, &slog.HandlerOptions{Level: slog.LevelError}))
	e.reg = prometheus.NewRegistry()
	e.svc = ingest.NewService(e.l, lookup{projector.NewLookup(store, e.l)}, nil, ingest.NewMetrics(e.reg), log)
	return orderFixture{env: e, cancelled: cancelled, pending: pending, errors: errs}
}

// orderIDCase is an order ID and what looking it up must answer.
type orderIDCase struct {
	name, id   string
	user       string // the user_id the lookup names: the order's own
	wantStatus string // "" for a refusal
	wantHTTP   int
	wantGRPC   codes.Code
}

// orderIDCases are the spellings of the fixture's orders: only the canonical one finds the
// order; every other spelling is refused as invalid, whatever Redis would make of it.
func (f orderFixture) orderIDCases() []orderIDCase {
	p, sid, _ := strings.Cut(f.cancelled, "-")
	ms, seq, _ := strings.Cut(sid, "-")
	invalid := func(name, id string) orderIDCase {
		return orderIDCase{name: name, id: id, user: "u1", wantHTTP: http.StatusBadRequest, wantGRPC: codes.InvalidArgument}
	}
	unknown := func(name, id string) orderIDCase {
		return orderIDCase{name: name, id: id, user: "u1", wantHTTP: http.StatusNotFound, wantGRPC: codes.NotFound}
	}
	return []orderIDCase{
		{name: "cancelled", id: f.cancelled, user: "u1", wantStatus: ledger.StatusCancelled, wantHTTP: http.StatusOK, wantGRPC: codes.OK},
		{name: "pending", id: f.pending, user: "u2", wantStatus: ledger.StatusPending, wantHTTP: http.StatusOK, wantGRPC: codes.OK},
		{name: "cancelled, another user", id: f.cancelled, user: "u2", wantHTTP: http.StatusNotFound, wantGRPC: codes.NotFound},
		{name: "pending, no user", id: f.pending, wantHTTP: http.StatusNotFound, wantGRPC: codes.NotFound},
		invalid("leading zero in ms", p+"-0"+sid),
		invalid("leading zero in partition", "0"+f.cancelled),
		invalid("plus sign on partition", "+"+f.cancelled),
		invalid("leading zero in seq", p+"-"+ms+"-0"+seq),
		invalid("plus sign on ms", p+"-+"+sid),
		invalid("ms only", p+"-"+ms),
		invalid("ms beyond 64 bits", p+"-99999999999999999999-0"),
		invalid("seq beyond 64 bits", p+"-"+ms+"-18446744073709551616"),
		invalid("partition beyond 64 bits", "18446744073709551616-"+sid),
		invalid("trailing space", f.cancelled+" "),
		invalid("garbage", "garbage"),
		unknown("unknown order", p+"-"+ms+"-"+"7"),
		unknown("unknown partition", "4-"+sid),
		unknown("partition no ledger has", "18446744073709551615-"+sid),
		unknown("largest stream ID", p+"-18446744073709551615-18446744073709551615"),
	}
}

func TestHTTPOrderIDs(t *testing.T) {
	t.Parallel()
	f := newOrderFixture(t)
	base, c := f.startHTTP(t)
	for _, tt := range f.orderIDCases() {
		t.Run(tt.name, func(t *testing.T) {
			r := mustSend(t, c, http.MethodGet, base+"/api/orders/"+url.PathEscape(tt.id)+"?user_id="+url.QueryEscape(tt.user), nil)
			if r.status != tt.wantHTTP {
				t.Fatalf("GET order %q: got %d %s, want %d", tt.id, r.status, r.body, tt.wantHTTP)
			}
			if tt.wantStatus == "" {
				if rep, err := decodeReply(r); err != nil || rep.Success || rep.Message == "" {
					t.Errorf("GET order %q: got %s (%v), want an error reply with a message", tt.id, r.body, err)
				}
				return
			}
			var o struct {
				OrderID string `json:"order_id"`
				Status  string `json:"status"`
			}
			if err := json.Unmarshal(r.body, &o); err != nil || o.OrderID != tt.id || o.Status != tt.wantStatus {
				t.Errorf("GET order %q: got %s (%v), want order %s %s", tt.id, r.body, err, tt.id, tt.wantStatus)
			}
		})
	}
	if logged := f.errors.String(); logged != "" {
		t.Errorf("error log: got %q, want nothing", logged)
	}
}

func TestGRPCOrderIDs(t *testing.T) {
	t.Parallel()
	f := newOrderFixture(t)
	client := f.orderClient(t)
	for _, tt := range f.orderIDCases() {
		t.Run(tt.name, func(t *testing.T) {
			o, err := client.GetOrder(context.Background(), &pb.GetOrderRequest{OrderId: tt.id, UserId: tt.user})
			if code := status.Code(err); code != tt.wantGRPC {
				t.Fatalf("GetOrder %q: got %v, want %v", tt.id, err, tt.wantGRPC)
			}
			if tt.wantStatus != "" && (o.GetOrderId() != tt.id || o.GetStatus() != tt.wantStatus) {
				t.Errorf("GetOrder %q: got %v, want order %s %s", tt.id, o, tt.id, tt.wantStatus)
			}
		})
	}
	if logged := f.errors.String(); logged != "" {
		t.Errorf("error log: got %q, want nothing", logged)
	}
}
