package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var (
	payScript    = redis.NewScript(lua.Pay)
	cancelScript = redis.NewScript(lua.Cancel)
	expireScript = redis.NewScript(lua.Expire)
)

// The event types of reservations: an order placed under a pay-within rule is reserved until
// one of them closes it.
const (
	// EventPaid: a reserved order was paid in time.
	EventPaid EventType = "paid"
	// EventCancelled: the buyer cancelled a reserved order; its units went back on sale.
	EventCancelled EventType = "cancelled"
	// EventExpired: a reserved order was not paid by pay_by; its units went back on sale.
	EventExpired EventType = "expired"
)

// The states of a reservation.
const (
	StateReserved  = "reserved"
	StatePaid      = "paid"
	StateCancelled = "cancelled"
	StateExpired   = "expired"
)

// Errors of Pay and Cancel.
var (
	// ErrNoPayment: the order was placed without a pay-within rule; it needs no payment and
	// cannot be cancelled by its buyer.
	ErrNoPayment = errors.New("order needs no payment")
	// ErrPaidOtherwise: the order is already paid with another payment_ref.
	ErrPaidOtherwise = errors.New("order already paid with another payment_ref")
	// ErrOrderPaid: a paid order cannot be cancelled.
	ErrOrderPaid = errors.New("order is paid")
	// ErrOrderClosed: the order expired or was cancelled (also a reserved order past its
	// pay_by, which the sweeper is about to expire); its units are back on sale.
	ErrOrderClosed = errors.New("order expired or cancelled")
	// ErrOrderGone: the order's sale was closed and its state deleted (Cleanup), or its entry
	// trimmed from the ledger: whatever happened to it is final and no longer answered in
	// detail (its status stays readable from MySQL). Answered 410, like ErrOrderClosed.
	ErrOrderGone = errors.New("order's sale is closed; its payment state is no longer kept")
)

// MaxPaymentRef bounds a payment reference.
const MaxPaymentRef = 128

// Reservation is the state of an order placed under a pay-within rule.
type Reservation struct {
	OrderID    string
	State      string
	PayBy      time.Time
	PaymentRef string
	// PaidAt is set once paid.
	PaidAt time.Time
}

// ValidatePaymentRef checks a payment reference: 1..128 bytes of printable UTF-8 (the rule of
// request and user IDs, validID).
func ValidatePaymentRef(ref string) error {
	if ref == "" {
		return ErrMissingFields
	}
	if !validID(ref, MaxPaymentRef, true) {
		return invalid("payment_ref must be 1..%d bytes of printable UTF-8 %s", MaxPaymentRef, printableRule)
	}
	return nil
}

// orderKeys parses orderID and returns its partition, or ErrInvalid / ErrUnknownOrder.
func (l *Ledger) orderPartition(orderID string) (int, error) {
	p, _, err := ParseOrderID(orderID)
	if err != nil {
		return 0, err
	}
	if p >= l.keys.Partitions() {
		return 0, ErrUnknownOrder
	}
	return p, nil
}

// noState tells an order without a state hash apart: ErrUnknownOrder if it is not user's;
// ErrNoPayment if it exists and was placed without a pay-within rule; ErrOrderGone if it was
// placed under one (its state was deleted when its closed sale was cleaned) or if its entry is
// at or before the partition's checkpoint (trimmed: a payment retried after its sale closed and
// its history was trimmed; said to any caller, as it tells no more than the ID's age);
// ErrUnknownOrder otherwise.
func (l *Ledger) noState(ctx context.Context, orderID, user string) error {
	e, err := l.Order(ctx, orderID)
	if errors.Is(err, ErrUnknownOrder) {
		p, sid, perr := ParseOrderID(orderID)
		if perr != nil {
			return err
		}
		ckpt, cerr := l.CheckpointID(ctx, p)
		if cerr != nil {
			return cerr
		}
		if ckpt != "" && CompareIDs(sid, ckpt) <= 0 {
			return ErrOrderGone
		}
		return err
	}
	if err != nil {
		return err
	}
	if e.UserID != user {
		return ErrUnknownOrder
	}
	if !e.PayBy.IsZero() {
		return ErrOrderGone
	}
	return ErrNoPayment
}

// Pay pays the reserved order orderID with paymentRef, before its pay_by by Redis's clock.
// Paying a paid order again with the same paymentRef returns the same Reservation: a retry is
// safe. user is the caller: only the order's own user may pay it; to anyone else (and to
// user "") the order is unknown, and nothing changes. Errors: ErrInvalid, ErrUnknownOrder,
// ErrNoPayment, ErrPaidOtherwise, ErrOrderClosed, ErrUnavailable.
func (l *Ledger) Pay(ctx context.Context, orderID, user, paymentRef string) (Reservation, error) {
	if err := ValidatePaymentRef(paymentRef); err != nil {
		return Reservation{}, err
	}
	p, err := l.orderPartition(orderID)
	if err != nil {
		return Reservation{}, err
	}
	if user == "" {
		return Reservation{}, ErrUnknownOrder
	}
	k := l.keys
	keys := []string{k.Order(p, orderID), k.Due(p), k.Events(p)}
	v, err := payScript.Run(ctx, l.rdb, keys, orderID, paymentRef, user).Result()
	if err != nil {
		return Reservation{}, redisErr("pay", err)
	}
	a, code, err := scriptReply(v, 4)
	if err != nil {
		return Reservation{}, err
	}
	state, _ := a[1].(string)
	r := Reservation{OrderID: orderID, State: state, PayBy: msField(a[2]), PaidAt: msField(a[3])}
	switch code {
	case 0, 2:
		r.PaymentRef = paymentRef
		return r, nil
	case 1:
		return Reservation{}, l.noState(ctx, orderID, user)
	case 3:
		return r, ErrPaidOtherwise
	case 4:
		if drawWaiting(state) {
			return r, ErrNotWon
		}
		return r, ErrOrderClosed
	}
	return Reservation{}, fmt.Errorf("pay script: unknown code %d", code)
}

// Cancel cancels the reserved order orderID for its buyer: its units go back on sale and the
// buyer's per-user count is released. Cancelling a cancelled order again returns the same
// success. user is the caller: only the order's own user may cancel it; to anyone else (and
// to user "") the order is unknown, and nothing changes. Errors: ErrInvalid, ErrUnknownOrder,
// ErrNoPayment, ErrOrderPaid, ErrOrderClosed (expired), ErrUnavailable.
func (l *Ledger) Cancel(ctx context.Context, orderID, user string) (Reservation, error) {
	if _, err := l.orderPartition(orderID); err != nil {
		return Reservation{}, err
	}
	if user == "" {
		return Reservation{}, ErrUnknownOrder
	}
	code, state, err := l.release(ctx, cancelScript, orderID, user)
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{OrderID: orderID, State: state}
	switch {
	case code == 0 || (code == 2 && state == StateCancelled):
		if got, err := l.Reservation(ctx, orderID); err == nil {
			return got, nil
		}
		r.State = StateCancelled
		return r, nil
	case code == 1:
		return Reservation{}, l.noState(ctx, orderID, user)
	case code == 2 && state == StatePaid:
		return r, ErrOrderPaid
	case code == 2 && drawWaiting(state):
		return r, ErrNotWon
	case code == 2:
		return r, ErrOrderClosed
	}
	return Reservation{}, fmt.Errorf("cancel script: unknown code %d", code)
}

// Expire expires orderID if it is still reserved and past its pay_by by Redis's clock: its
// units go back on sale, and it leaves the due set. It reports whether this call expired it;
// an order already closed (or unknown) only leaves the due set. Safe to call concurrently.
func (l *Ledger) Expire(ctx context.Context, orderID string) (bool, error) {
	code, _, err := l.release(ctx, expireScript, orderID, "")
	if err != nil {
		return false, err
	}
	return code == 0, nil
}

// release runs the cancel or expire script on orderID: it reads the order's item and user
// (immutable) to build the stock and per-user keys, which the script checks.
func (l *Ledger) release(ctx context.Context, s *redis.Script, orderID, user string) (int64, string, error) {
	p, err := l.orderPartition(orderID)
	if err != nil {
		return 0, "", err
	}
	k := l.keys
	h, err := l.rdb.HMGet(ctx, k.Order(p, orderID), "item_id", "user_id").Result()
	if err != nil {
		return 0, "", redisErr("read order state", err)
	}
	item, _ := h[0].(string)
	owner, _ := h[1].(string)
	if item == "" || ValidateItemID(item) != nil || k.Partition(item) != p {
		if s == expireScript {
			// Unknown: only drop it from the due set.
			if err := l.rdb.ZRem(ctx, k.Due(p), orderID).Err(); err != nil {
				return 0, "", redisErr("drop due order", err)
			}
		}
		return 1, "", nil
	}
	keys := []string{k.Order(p, orderID), k.Due(p), k.Events(p), k.Stock(item), k.Users(item), k.Rules(item)}
	args := []any{orderID, item, owner}
	if s == cancelScript {
		args = append(args, user)
	}
	args = append(args, l.leaseMS)
	v, err := s.Run(ctx, l.rdb, keys, args...).Result()
	if err != nil {
		return 0, "", redisErr("release order", err)
	}
	a, code, err := scriptReply(v, 3)
	if err != nil {
		return 0, "", err
	}
	state, _ := a[1].(string)
	return code, state, nil
}

// Reservation returns the state of orderID, or ErrUnknownOrder for an order without one
// (unknown, or placed without a pay-within rule). A draw entry still registered once its
// item's draw is done is waitlisted (the draw writes no state for its waitlisted entries).
func (l *Ledger) Reservation(ctx context.Context, orderID string) (Reservation, error) {
	p, err := l.orderPartition(orderID)
	if err != nil {
		return Reservation{}, err
	}
	h, err := l.rdb.HMGet(ctx, l.keys.Order(p, orderID), "state", "pay_by", "payment_ref", "paid_at", "item_id").Result()
	if err != nil {
		return Reservation{}, redisErr("read order state", err)
	}
	state, _ := h[0].(string)
	if state == "" {
		return Reservation{}, ErrUnknownOrder
	}
	if item, _ := h[4].(string); state == StateRegistered && ValidateItemID(item) == nil {
		done, err := l.rdb.HGet(ctx, l.keys.DrawState(item), "done").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return Reservation{}, redisErr("read draw state", err)
		}
		if done == "1" {
			state = StateWaitlisted
		}
	}
	ref, _ := h[2].(string)
	return Reservation{OrderID: orderID, State: state, PayBy: msField(h[1]), PaymentRef: ref, PaidAt: msField(h[3])}, nil
}

// DueOrders returns up to n orders of partition p whose pay_by is at or before now (unix ms),
// oldest deadline first.
func (l *Ledger) DueOrders(ctx context.Context, p int, now time.Time, n int64) ([]string, error) {
	ids, err := l.rdb.ZRangeByScore(ctx, l.keys.Due(p), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: n,
	}).Result()
	if err != nil {
		return nil, redisErr("read due orders", err)
	}
	return ids, nil
}

// OldestDue returns the earliest pay_by of partition p's reserved orders; ok is false when
// none is reserved.
func (l *Ledger) OldestDue(ctx context.Context, p int) (deadline time.Time, ok bool, err error) {
	z, err := l.rdb.ZRangeWithScores(ctx, l.keys.Due(p), 0, 0).Result()
	if err != nil {
		return time.Time{}, false, redisErr("read due orders", err)
	}
	if len(z) == 0 {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(int64(z[0].Score)), true, nil
}

// RedisTime returns Redis's clock, the one the scripts decide deadlines by.
func (l *Ledger) RedisTime(ctx context.Context) (time.Time, error) {
	t, err := l.rdb.Time(ctx).Result()
	if err != nil {
		return time.Time{}, redisErr("time", err)
	}
	return t, nil
}

func msField(v any) time.Time {
	var n int64
	switch x := v.(type) {
	case string:
		n, _ = strconv.ParseInt(x, 10, 64)
	case int64:
		n = x
	}
	if n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}
