package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The ledger's error vocabulary. Transports map each to a status in one table; anything else is
// an internal error whose text clients never see.
var (
	// ErrInvalid: the request is malformed (missing field, bad quantity, bad ID).
	ErrInvalid = errors.New("invalid request")
	// ErrMissingFields: a required field is empty (quantity counts as missing when zero).
	ErrMissingFields = fmt.Errorf("%w: missing required fields", ErrInvalid)
	// ErrUnknownItem: the item has never been put on sale.
	ErrUnknownItem = errors.New("unknown item")
	// ErrUnknownOrder: no such order.
	ErrUnknownOrder = errors.New("unknown order")
	// ErrDuplicate: the request_id already placed an order; see DuplicateError.
	ErrDuplicate = errors.New("duplicate request")
	// ErrRequestIDTaken: the request_id already placed an order of another user for the item
	// (or of an owner not recorded, see RequestOwner). It does not match ErrDuplicate and
	// carries no order: the order is not the caller's to see.
	ErrRequestIDTaken = errors.New("request_id already used")
	// ErrLimit: the user would exceed the item's per-user limit.
	ErrLimit = errors.New("purchase limit reached")
	// ErrNotStarted: the sale window has not opened yet.
	ErrNotStarted = errors.New("sale has not started")
	// ErrEnded: the sale window has closed.
	ErrEnded = errors.New("sale has ended")
	// ErrItemClosed: the item's sale was closed for good (Ledger.Close): no purchase and no
	// stock change is taken any more.
	ErrItemClosed = errors.New("sale closed")
	// ErrSoldOut: fewer units are left than asked for.
	ErrSoldOut = errors.New("sold out")
	// ErrItemExists: an init on an item that already has stock.
	ErrItemExists = errors.New("item already has stock")
	// ErrNegativeStock: a stock change would take the stock below zero.
	ErrNegativeStock = errors.New("stock would go below zero")
	// ErrTooMuchStock: a stock change would take the stock above MaxStock.
	ErrTooMuchStock = fmt.Errorf("stock would exceed the maximum of %d units", MaxStock)
	// ErrUnavailable: Redis cannot be reached (or is loading); nothing was done, retry later.
	ErrUnavailable = errors.New("ledger unavailable")
)

// DuplicateError is returned when a request_id already placed an order for the item and the
// same user. It matches ErrDuplicate with errors.Is and carries the original order.
type DuplicateError struct {
	OrderID string
}

func (e *DuplicateError) Error() string { return "duplicate request: order " + e.OrderID }

// Is reports whether target is ErrDuplicate.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// redisErr wraps err from a Redis call with what, turning connection failures and transient
// server states into ErrUnavailable so that callers can answer "retry later".
func redisErr(what string, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !transientReply(err.Error()) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

// transientReply reports whether a Redis error reply means "not now" rather than "never".
// OOM (Redis at maxmemory with noeviction) refuses a write before anything was written.
func transientReply(msg string) bool {
	for _, p := range []string{"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "OOM", "MOVED", "ASK"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return strings.Contains(msg, "OOM command not allowed")
}
