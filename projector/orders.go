package projector

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sq "github.com/Masterminds/squirrel"

	"github.com/flashsale/flashsale/ledger"
)

// Order is an order with its status.
type Order struct {
	OrderID   string
	RequestID string
	UserID    string
	ItemID    string
	Quantity  int64
	// Status is StatusPending, StatusConfirmed or StatusCancelled; for an order placed under
	// a pay-within rule StatusReserved, StatusPaid, StatusExpired or StatusCancelled.
	Status    string
	CreatedAt time.Time
	// PayBy is the payment deadline of an order placed under a pay-within rule, else zero.
	PayBy time.Time
}

// Lookup finds orders wherever they are: MySQL for projected orders (confirmed or cancelled),
// else the ledger stream (pending: acknowledged, not yet projected).
type Lookup struct {
	store  *Store
	ledger *ledger.Ledger
}

// NewLookup returns a Lookup over store and l.
func NewLookup(store *Store, l *ledger.Ledger) *Lookup { return &Lookup{store: store, ledger: l} }

// Order returns the order orderID. Errors: ledger.ErrInvalid for a malformed ID,
// ledger.ErrUnknownOrder, ledger.ErrUnavailable when MySQL or Redis cannot be asked.
func (lk *Lookup) Order(ctx context.Context, orderID string) (Order, error) {
	if _, _, err := ledger.ParseOrderID(orderID); err != nil {
		return Order{}, err
	}
	o, err := lk.store.Order(ctx, orderID)
	if err == nil {
		return lk.live(ctx, o)
	}
	if !errors.Is(err, ledger.ErrUnknownOrder) {
		return Order{}, fmt.Errorf("%w: %w", ledger.ErrUnavailable, err)
	}
	e, err := lk.ledger.Order(ctx, orderID)
	if err != nil {
		return Order{}, err
	}
	o = Order{
		OrderID: e.OrderID, RequestID: e.RequestID, UserID: e.UserID, ItemID: e.ItemID,
		Quantity: e.Quantity, Status: StatusPending, CreatedAt: e.Time, PayBy: e.PayBy,
	}
	if e.Draw {
		o.Status = StatusRegistered
	}
	return lk.live(ctx, o)
}

// live gives an order placed under a pay-within rule its state in Redis, which is ahead of
// MySQL (a payment shows at once); a restocked order stays cancelled.
func (lk *Lookup) live(ctx context.Context, o Order) (Order, error) {
	entry := o.Status == StatusRegistered || o.Status == StatusWaitlisted
	if (o.PayBy.IsZero() && !entry) || o.Status == StatusCancelled {
		return o, nil
	}
	r, err := lk.ledger.Reservation(ctx, o.OrderID)
	switch {
	case errors.Is(err, ledger.ErrUnknownOrder):
		return o, nil
	case err != nil:
		return Order{}, err
	}
	o.Status = r.State
	if !r.PayBy.IsZero() {
		o.PayBy = r.PayBy // a draw entry gets its pay_by when it wins
	}
	return o, nil
}

// Order reads orderID from MySQL, or returns ledger.ErrUnknownOrder.
func (s *Store) Order(ctx context.Context, orderID string) (Order, error) {
	q, args := sq.Select("order_id", "request_id", "user_id", "item_id", "quantity", "status", "created_at", "pay_by").
		From("orders").Where(sq.Eq{"order_id": orderID}).MustSql()
	var o Order
	var payBy sql.NullTime
	err := s.db.QueryRowContext(ctx, q, args...).Scan(&o.OrderID, &o.RequestID, &o.UserID, &o.ItemID, &o.Quantity, &o.Status, &o.CreatedAt, &payBy)
	o.PayBy = payBy.Time
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, ledger.ErrUnknownOrder
	}
	if err != nil {
		return Order{}, fmt.Errorf("read order: %w", err)
	}
	return o, nil
}
