package ingest

import (
	"errors"
	"net/http"
	"slices"

	"google.golang.org/grpc/codes"

	"github.com/flashsale/flashsale/ledger"
)

// refusal is how one domain error is told to clients. The tables are checked in order with
// errors.Is; an error that matches none is internal: logged, and answered without its text.
type refusal struct {
	err     error
	message string // "" means the error's own text, which ledger keeps client-safe
}

// httpRefusal is a refusal answered with an HTTP status.
type httpRefusal struct {
	refusal
	status int
}

var (
	// httpErrors maps the ledger's errors to HTTP statuses.
	httpErrors = []httpRefusal{
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
		{refusal{ledger.ErrRegistrationClosed, ""}, http.StatusGone},
		{refusal{ledger.ErrNotWon, ""}, http.StatusConflict},
		{refusal{ledger.ErrOrderGone, ""}, http.StatusGone},
		{refusal{ledger.ErrDuplicate, "duplicate request"}, http.StatusConflict},
		{refusal{ledger.ErrRequestIDTaken, "request_id already used"}, http.StatusConflict},
		{refusal{ledger.ErrLimit, "purchase limit reached"}, http.StatusForbidden},
		{refusal{ledger.ErrNotStarted, "sale has not started"}, http.StatusForbidden},
		{refusal{ledger.ErrEnded, "sale has ended"}, http.StatusForbidden},
		{refusal{ledger.ErrSoldOut, "sold out"}, http.StatusGone},
		{refusal{ledger.ErrItemClosed, "sale closed"}, http.StatusGone},
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
		{refusal{ledger.ErrRegistrationClosed, ""}, codes.FailedPrecondition},
		{refusal{ledger.ErrNotWon, ""}, codes.FailedPrecondition},
		{refusal{ledger.ErrOrderGone, ""}, codes.FailedPrecondition},
		{refusal{errNoPayments, ""}, codes.Unimplemented},
		{refusal{ledger.ErrDuplicate, "duplicate request"}, codes.AlreadyExists},
		{refusal{ledger.ErrRequestIDTaken, "request_id already used"}, codes.AlreadyExists},
		{refusal{ledger.ErrLimit, "purchase limit reached"}, codes.FailedPrecondition},
		{refusal{ledger.ErrNotStarted, "sale has not started"}, codes.FailedPrecondition},
		{refusal{ledger.ErrEnded, "sale has ended"}, codes.FailedPrecondition},
		{refusal{ledger.ErrSoldOut, "sold out"}, codes.ResourceExhausted},
		{refusal{ledger.ErrItemClosed, "sale closed"}, codes.FailedPrecondition},
		{refusal{ledger.ErrUnavailable, "service unavailable, retry with the same request_id"}, codes.Unavailable},
	}
)

const internalMessage = "internal error"

// httpSentinels are the entries of httpErrors that an error equal to their err meets first:
// an error that is such a sentinel itself (the usual refusals) is answered without the
// errors.Is walk down the table.
var httpSentinels = func() []httpRefusal {
	var out []httpRefusal
	for i, e := range httpErrors {
		if slices.IndexFunc(httpErrors, func(f httpRefusal) bool { return errors.Is(e.err, f.err) }) == i {
			out = append(out, e)
		}
	}
	return out
}()

// httpError returns the status and client message for err; ok is false for internal errors.
func httpError(err error) (status int, message string, ok bool) {
	for _, e := range httpSentinels {
		// The sentinels are pointers: == compares types first and never panics.
		if err == e.err {
			return e.status, e.text(err), true
		}
	}
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
func outcome(err error) string { return outcomes[outcomeOf(err)] }

// outcomeOf is the index in outcomes of err's label.
func outcomeOf(err error) int {
	switch {
	case err == nil:
		return outOK
	case errors.Is(err, ledger.ErrSoldOut):
		return outSoldOut
	case errors.Is(err, ledger.ErrDuplicate):
		return outDuplicate
	case errors.Is(err, ledger.ErrRequestIDTaken):
		return outRequestIDTaken
	case errors.Is(err, ledger.ErrInvalid):
		return outInvalid
	case errors.Is(err, ledger.ErrUnknownItem):
		return outUnknownItem
	case errors.Is(err, ledger.ErrLimit):
		return outLimit
	case errors.Is(err, ledger.ErrNotStarted), errors.Is(err, ledger.ErrEnded):
		return outClosed
	case errors.Is(err, ledger.ErrUnavailable):
		return outUnavailable
	case errors.Is(err, ErrUnauthenticated):
		return outUnauthenticated
	case errors.Is(err, ErrUserMismatch):
		return outUserMismatch
	}
	return outError
}
