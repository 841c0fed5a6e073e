package projector

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	sq "github.com/Masterminds/squirrel"

	"github.com/flashsale/flashsale/ledger"
)

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
func (lk *Lookup) Order(ctx context.Context, orderID string) (ledger.Order, error) {
	if _, _, err := ledger.ParseOrderID(orderID); err != nil {
		return ledger.Order{}, err
	}
	o, err := lk.store.Order(ctx, orderID)
	if err == nil {
		return lk.live(ctx, o)
	}
	if !errors.Is(err, ledger.ErrUnknownOrder) {
		return ledger.Order{}, fmt.Errorf("%w: %w", ledger.ErrUnavailable, err)
	}
	e, err := lk.ledger.Order(ctx, orderID)
	if err != nil {
		return ledger.Order{}, err
	}
	o = ledger.Order{
		OrderID: e.OrderID, RequestID: e.RequestID, UserID: e.UserID, ItemID: e.ItemID,
		Quantity: e.Quantity, Status: ledger.StatusPending, CreatedAt: e.Time, PayBy: e.PayBy,
	}
	if e.Draw {
		o.Status = ledger.StatusRegistered
	}
	return lk.live(ctx, o)
}

// live gives an order placed under a pay-within rule its state in Redis, which is ahead of
// MySQL (a payment shows at once); a restocked order stays cancelled.
func (lk *Lookup) live(ctx context.Context, o ledger.Order) (ledger.Order, error) {
	entry := o.Status == ledger.StatusRegistered || o.Status == ledger.StatusWaitlisted
	if (o.PayBy.IsZero() && !entry) || o.Status == ledger.StatusCancelled {
		return o, nil
	}
	r, err := lk.ledger.Reservation(ctx, o.OrderID)
	switch {
	case errors.Is(err, ledger.ErrUnknownOrder):
		return o, nil
	case err != nil:
		return ledger.Order{}, err
	}
	// While a draw is being written, Redis says registered for every entry not won (the draw
	// writes no state for its waitlisted entries): a row already waitlisted stays so.
	if r.State != ledger.StateRegistered || o.Status != ledger.StatusWaitlisted {
		o.Status = r.State
	}
	if !r.PayBy.IsZero() {
		o.PayBy = r.PayBy // a draw entry gets its pay_by when it wins
	}
	return o, nil
}

// Order reads orderID from MySQL, or returns ledger.ErrUnknownOrder.
func (s *Store) Order(ctx context.Context, orderID string) (ledger.Order, error) {
	q, args := sq.Select("order_id", "request_id", "user_id", "item_id", "quantity", "status", "created_at", "pay_by").
		From("orders").Where(sq.Eq{"order_id": orderID}).MustSql()
	var o ledger.Order
	var payBy sql.NullTime
	err := s.db.QueryRowContext(ctx, q, args...).Scan(&o.OrderID, &o.RequestID, &o.UserID, &o.ItemID, &o.Quantity, &o.Status, &o.CreatedAt, &payBy)
	o.PayBy = payBy.Time
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Order{}, ledger.ErrUnknownOrder
	}
	if err != nil {
		return ledger.Order{}, fmt.Errorf("read order: %w", err)
	}
	return o, nil
}
