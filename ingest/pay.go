package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
)

// Payments pays and cancels orders placed under a pay-within rule; *ledger.Ledger is one. The
// pay and cancel routes are offered when the Service's ledger implements it.
type Payments interface {
	Pay(ctx context.Context, orderID, user, paymentRef string) (ledger.Reservation, error)
	Cancel(ctx context.Context, orderID, user string) (ledger.Reservation, error)
}

// payReply is the JSON reply of POST /api/orders/{order_id}/pay and /cancel.
type payReply struct {
	Success    bool       `json:"success"`
	Message    string     `json:"message"`
	OrderID    string     `json:"order_id"`
	Status     string     `json:"status"`
	PayBy      *time.Time `json:"pay_by,omitempty"`
	PaidAt     *time.Time `json:"paid_at,omitempty"`
	PaymentRef string     `json:"payment_ref,omitempty"`
}

func newPayReply(r ledger.Reservation, msg string) payReply {
	out := payReply{Success: true, Message: msg, OrderID: r.OrderID, Status: r.State, PaymentRef: r.PaymentRef}
	if !r.PayBy.IsZero() {
		t := r.PayBy.UTC()
		out.PayBy = &t
	}
	if !r.PaidAt.IsZero() {
		t := r.PaidAt.UTC()
		out.PaidAt = &t
	}
	return out
}

// mountPayments adds the pay and cancel routes if the ledger can pay.
func (s *Service) mountPayments(r *mux.Router) {
	if _, ok := s.ledger.(Payments); !ok {
		return
	}
	r.HandleFunc("/api/orders/{order_id}/pay", s.handlePay).Methods(http.MethodPost)
	r.HandleFunc("/api/orders/{order_id}/cancel", s.handleCancel).Methods(http.MethodPost)
}

// DecodePay reads the body of a pay request: exactly one object with the key payment_ref, a
// string, optionally user_id, a string, and nothing else (the rules of DecodePurchase).
func DecodePay(body []byte) (ref, user string, err error) {
	var r *string
	err = decodeObject(body, func(key string, dec *json.Decoder) error {
		switch key {
		case "payment_ref":
			return dec.Decode(&r)
		case "user_id":
			return dec.Decode(&user)
		}
		return errBody
	})
	if err != nil {
		return "", "", err
	}
	if r == nil {
		return "", "", ledger.ErrMissingFields
	}
	return *r, user, nil
}

// DecodeCancel reads the body of a cancel request: empty, or exactly one object with at most
// the key user_id, a string.
func DecodeCancel(body []byte) (user string, err error) {
	if len(body) == 0 {
		return "", nil
	}
	err = decodeObject(body, func(key string, dec *json.Decoder) error {
		if key != "user_id" {
			return errBody
		}
		return dec.Decode(&user)
	})
	return user, err
}

func (s *Service) handlePay(w http.ResponseWriter, r *http.Request) {
	verified, err := s.authenticate(r.Header.Values("Authorization"))
	if err != nil {
		s.writeLedgerError(w, r, s.payOutcome(err))
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	ref, named, err := DecodePay(body)
	if err != nil {
		s.writePayError(w, r, s.payOutcome(err))
		return
	}
	res, err := s.pay(r.Context(), verified, named, mux.Vars(r)["order_id"], ref)
	if err != nil {
		s.writePayError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newPayReply(res, "order paid"))
}

func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request) {
	verified, err := s.authenticate(r.Header.Values("Authorization"))
	if err != nil {
		s.writeLedgerError(w, r, s.cancelOutcome(err))
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	named, err := DecodeCancel(body)
	if err != nil {
		s.writePayError(w, r, s.cancelOutcome(err))
		return
	}
	res, err := s.cancel(r.Context(), verified, named, mux.Vars(r)["order_id"])
	if err != nil {
		s.writePayError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newPayReply(res, "order cancelled"))
}

// writePayError answers a refused pay or cancel; a body error is a 400 like the purchase's.
func (s *Service) writePayError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errBody) {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	s.writeLedgerError(w, r, err)
}

// pay pays orderID for the user that orderUser names from verified and named.
func (s *Service) pay(ctx context.Context, verified, named, orderID, ref string) (ledger.Reservation, error) {
	if _, _, err := ledger.ParseOrderID(orderID); err != nil {
		return ledger.Reservation{}, s.payOutcome(err)
	}
	user, err := s.orderUser(verified, named)
	if err != nil {
		return ledger.Reservation{}, s.payOutcome(err)
	}
	res, err := s.ledger.(Payments).Pay(ctx, orderID, user, ref)
	return res, s.payOutcome(err)
}

// cancel cancels orderID for the user that orderUser names from verified and named.
func (s *Service) cancel(ctx context.Context, verified, named, orderID string) (ledger.Reservation, error) {
	if _, _, err := ledger.ParseOrderID(orderID); err != nil {
		return ledger.Reservation{}, s.cancelOutcome(err)
	}
	user, err := s.orderUser(verified, named)
	if err != nil {
		return ledger.Reservation{}, s.cancelOutcome(err)
	}
	res, err := s.ledger.(Payments).Cancel(ctx, orderID, user)
	return res, s.cancelOutcome(err)
}

// payOutcome counts a pay attempt and returns err.
func (s *Service) payOutcome(err error) error {
	s.metrics.payments.WithLabelValues(payLabel(err)).Inc()
	return err
}

// cancelOutcome counts a cancel by the buyer and returns err.
func (s *Service) cancelOutcome(err error) error {
	s.metrics.cancels.WithLabelValues(payLabel(err)).Inc()
	return err
}

// payLabel names a pay or cancel outcome for the metrics.
func payLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ledger.ErrOrderClosed):
		return "closed"
	case errors.Is(err, ledger.ErrPaidOtherwise), errors.Is(err, ledger.ErrOrderPaid), errors.Is(err, ledger.ErrNoPayment):
		return "conflict"
	case errors.Is(err, ledger.ErrUnknownOrder):
		return "unknown_order"
	case errors.Is(err, ledger.ErrInvalid), errors.Is(err, errBody):
		return "invalid"
	case errors.Is(err, ledger.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrUnauthenticated):
		return "unauthenticated"
	case errors.Is(err, ErrUserMismatch):
		return "user_mismatch"
	}
	return "error"
}

func (g *grpcService) Pay(ctx context.Context, in *pb.PayRequest) (*pb.PayResponse, error) {
	if _, ok := g.s.ledger.(Payments); !ok {
		return nil, g.status(ctx, "Pay", errNoPayments)
	}
	verified, err := g.s.authenticate(authorization(ctx))
	if err != nil {
		return nil, g.status(ctx, "Pay", g.s.payOutcome(err))
	}
	res, err := g.s.pay(ctx, verified, in.GetUserId(), in.GetOrderId(), in.GetPaymentRef())
	if err != nil {
		return nil, g.status(ctx, "Pay", err)
	}
	return payResponse(res), nil
}

func (g *grpcService) Cancel(ctx context.Context, in *pb.CancelRequest) (*pb.PayResponse, error) {
	if _, ok := g.s.ledger.(Payments); !ok {
		return nil, g.status(ctx, "Cancel", errNoPayments)
	}
	verified, err := g.s.authenticate(authorization(ctx))
	if err != nil {
		return nil, g.status(ctx, "Cancel", g.s.cancelOutcome(err))
	}
	res, err := g.s.cancel(ctx, verified, in.GetUserId(), in.GetOrderId())
	if err != nil {
		return nil, g.status(ctx, "Cancel", err)
	}
	return payResponse(res), nil
}

var errNoPayments = errors.New("payments are not served by this process")

func payResponse(r ledger.Reservation) *pb.PayResponse {
	out := &pb.PayResponse{OrderId: r.OrderID, Status: r.State, PaymentRef: r.PaymentRef}
	if !r.PayBy.IsZero() {
		out.PayByMs = r.PayBy.UnixMilli()
	}
	if !r.PaidAt.IsZero() {
		out.PaidAtMs = r.PaidAt.UnixMilli()
	}
	return out
}
