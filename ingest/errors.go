package ingest

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/flashsale/flashsale/ledger"
)

// refusal is how one domain error is told to clients. The tables are checked in order with
// errors.Is; an error that matches none is internal: logged, and answered without its text.
type refusal struct {
	err     error
	message string // "" means the error's own text, which ledger keeps client-safe
}

var (
	// httpErrors maps the ledger's errors to HTTP statuses.
	httpErrors = []struct {
		refusal
		status int
	}{
		{refusal{ErrUnauthenticated, ""}, http.StatusUnauthorized},
		{refusal{ErrUserMismatch, ""}, http.StatusForbidden},
		{refusal{ledger.ErrMissingFields, "missing required fields"}, http.StatusBadRequest},
		{refusal{ledger.ErrInvalid, ""}, http.StatusBadRequest},
		{refusal{ledger.ErrUnknownItem, "item not found"}, http.StatusNotFound},
		{refusal{ledger.ErrUnknownOrder, "order not found"}, http.StatusNotFound},
		{refusal{ledger.ErrNoPayment, ""}, http.StatusConflict},
		{refusal{ledger.ErrPaidOtherwise, ""}, http.StatusConflict},
		{refusal{ledger.ErrOrderPaid, ""}, http.StatusConflict},
		{refusal{ledger.ErrOrderClosed, ""}, http.StatusGone},
		{refusal{ledger.ErrDuplicate, "duplicate request"}, http.StatusConflict},
		{refusal{ledger.ErrRequestIDTaken, "request_id already used"}, http.StatusConflict},
		{refusal{ledger.ErrLimit, "purchase limit reached"}, http.StatusForbidden},
		{refusal{ledger.ErrNotStarted, "sale has not started"}, http.StatusForbidden},
		{refusal{ledger.ErrEnded, "sale has ended"}, http.StatusForbidden},
		{refusal{ledger.ErrSoldOut, "sold out"}, http.StatusGone},
		{refusal{ledger.ErrNegativeStock, "stock would go below zero"}, http.StatusConflict},
		{refusal{ledger.ErrTooMuchStock, ""}, http.StatusConflict},
		{refusal{ledger.ErrUnavailable, "service unavailable, retry with the same request_id"}, http.StatusServiceUnavailable},
	}
	// grpcErrors maps the ledger's errors to gRPC status codes.
	grpcErrors = []struct {
		refusal
		code codes.Code
	}{
		{refusal{ErrUnauthenticated, ""}, codes.Unauthenticated},
		{refusal{ErrUserMismatch, ""}, codes.PermissionDenied},
		{refusal{ledger.ErrMissingFields, "missing required fields"}, codes.InvalidArgument},
		{refusal{ledger.ErrInvalid, ""}, codes.InvalidArgument},
		{refusal{ledger.ErrUnknownItem, "item not found"}, codes.NotFound},
		{refusal{ledger.ErrUnknownOrder, "order not found"}, codes.NotFound},
		{refusal{ledger.ErrNoPayment, ""}, codes.FailedPrecondition},
		{refusal{ledger.ErrPaidOtherwise, ""}, codes.FailedPrecondition},
		{refusal{ledger.ErrOrderPaid, ""}, codes.FailedPrecondition},
		{refusal{ledger.ErrOrderClosed, ""}, codes.FailedPrecondition},
		{refusal{errNoPayments, ""}, codes.Unimplemented},
		{refusal{ledger.ErrDuplicate, "duplicate request"}, codes.AlreadyExists},
		{refusal{ledger.ErrRequestIDTaken, "request_id already used"}, codes.AlreadyExists},
		{refusal{ledger.ErrLimit, "purchase limit reached"}, codes.FailedPrecondition},
		{refusal{ledger.ErrNotStarted, "sale has not started"}, codes.FailedPrecondition},
		{refusal{ledger.ErrEnded, "sale has ended"}, codes.FailedPrecondition},
		{refusal{ledger.ErrSoldOut, "sold out"}, codes.ResourceExhausted},
		{refusal{ledger.ErrUnavailable, "service unavailable, retry with the same request_id"}, codes.Unavailable},
	}
)

const internalMessage = "internal error"

// httpError returns the status and client message for err; ok is false for internal errors.
func httpError(err error) (status int, message string, ok bool) {
	for _, e := range httpErrors {
		if errors.Is(err, e.err) {
			return e.status, e.text(err), true
		}
	}
	return http.StatusInternalServerError, internalMessage, false
}

// grpcError returns the code and client message for err; ok is false for internal errors.
func grpcError(err error) (code codes.Code, message string, ok bool) {
	for _, e := range grpcErrors {
		if errors.Is(err, e.err) {
			return e.code, e.text(err), true
		}
	}
	return codes.Internal, internalMessage, false
}

func (r refusal) text(err error) string {
	if r.message == "" {
		return err.Error()
	}
	return r.message
}

// outcome names err for metrics: "ok" or a short label of the refusal.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ledger.ErrSoldOut):
		return "sold_out"
	case errors.Is(err, ledger.ErrDuplicate):
		return "duplicate"
	case errors.Is(err, ledger.ErrRequestIDTaken):
		return "request_id_taken"
	case errors.Is(err, ledger.ErrInvalid):
		return "invalid"
	case errors.Is(err, ledger.ErrUnknownItem):
		return "unknown_item"
	case errors.Is(err, ledger.ErrLimit):
		return "limit"
	case errors.Is(err, ledger.ErrNotStarted), errors.Is(err, ledger.ErrEnded):
		return "closed"
	case errors.Is(err, ledger.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrUnauthenticated):
		return "unauthenticated"
	case errors.Is(err, ErrUserMismatch):
		return "user_mismatch"
	}
	return "error"
}
