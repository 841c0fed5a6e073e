package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flashsale/flashsale/ledger"
)

// MaxBodyBytes bounds a request body; a purchase fits in a few hundred bytes.
const MaxBodyBytes = 4 << 10

// NewHTTPServer returns an http.Server for h on addr with read, write and idle timeouts.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// Router returns the HTTP routes: the purchase API, item and order lookups, health, readiness
// and the Prometheus metrics of gatherer.
func (s *Service) Router(gatherer prometheus.Gatherer) *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not found", "")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", strings.Join(allowed(r, req), ", "))
		writeError(w, http.StatusMethodNotAllowed, "method not allowed", "")
	})
	// The purchase route is first and matches its path by comparison: a path template would
	// cost two regexp runs per request.
	r.NewRoute().MatcherFunc(exactPath("/api/purchase")).HandlerFunc(s.handlePurchase).Methods(http.MethodPost)
	r.HandleFunc("/api/items/{item_id}", s.handleItem).Methods(http.MethodGet)
	s.mountPayments(r)
	if s.orders != nil {
		r.HandleFunc("/api/orders/{order_id}", s.handleOrder).Methods(http.MethodGet)
	}
	r.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}).Methods(http.MethodGet)
	r.HandleFunc("/ready", s.handleReady).Methods(http.MethodGet)
	r.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	return r
}

// exactPath matches requests for path itself. It stands in for a template without variables;
// the router has already redirected unclean paths, so a plain comparison is the same match.
func exactPath(path string) mux.MatcherFunc {
	return func(r *http.Request, _ *mux.RouteMatch) bool { return r.URL.Path == path }
}

// allowed lists the methods of router's routes that match req's path, for the Allow header.
func allowed(router *mux.Router, req *http.Request) []string {
	var methods []string
	router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		probe := req.Clone(req.Context())
		ms, err := route.GetMethods()
		if err != nil {
			return nil
		}
		for _, m := range ms {
			probe.Method = m
			var match mux.RouteMatch
			if route.Match(probe, &match) && !slices.Contains(methods, m) {
				methods = append(methods, m)
			}
		}
		return nil
	})
	return methods
}

// purchaseBody is the JSON body of POST /api/purchase.
type purchaseBody struct {
	RequestID string `json:"request_id"`
	UserID    string `json:"user_id"`
	ItemID    string `json:"item_id"`
	Quantity  int64  `json:"quantity"`
}

// purchaseReply is the JSON reply of POST /api/purchase and of every error.
type purchaseReply struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
	OrderID string `json:"order_id,omitempty"`
}

var errBody = errors.New("invalid request body")

// DecodePurchase reads one purchase from a JSON body: exactly one object, known fields only,
// typed values, nothing after it. It checks the shape only; ledger validates the values.
func DecodePurchase(body []byte) (ledger.PurchaseRequest, error) {
	if req, ok := fastPurchase(body); ok {
		return req, nil
	}
	return decodePurchaseJSON(body)
}

// decodePurchaseJSON is DecodePurchase through encoding/json, for every body fastPurchase
// leaves undecided.
func decodePurchaseJSON(body []byte) (ledger.PurchaseRequest, error) {
	var b purchaseBody
	err := decodeObject(body, func(key string, dec *json.Decoder) error {
		switch key {
		case "request_id":
			return dec.Decode(&b.RequestID)
		case "user_id":
			return dec.Decode(&b.UserID)
		case "item_id":
			return dec.Decode(&b.ItemID)
		case "quantity":
			return dec.Decode(&b.Quantity)
		}
		return errBody
	})
	if err != nil {
		return ledger.PurchaseRequest{}, err
	}
	return ledger.PurchaseRequest{RequestID: b.RequestID, UserID: b.UserID, ItemID: b.ItemID, Quantity: b.Quantity}, nil
}

// decodeObject reads a body that is exactly one JSON object, calling field for each key to
// decode its value. It is stricter than encoding/json alone: the body must be valid UTF-8 (no
// bytes silently turned into U+FFFD), keys match exactly (not case-insensitively) and appear
// at most once, and nothing may follow the object. Any failure is errBody.
func decodeObject(body []byte, field func(key string, dec *json.Decoder) error) error {
	if !utf8.Valid(body) {
		return errBody
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errBody
	}
	var seen [9]string
	n := 0
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok || n == len(seen) || slices.Contains(seen[:n], key) {
			return errBody
		}
		seen[n] = key
		n++
		if err := field(key, dec); err != nil {
			return errBody
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return errBody
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errBody
	}
	return nil
}

// readBody reads a request body of at most MaxBodyBytes, answering 413 or 400 itself when it
// cannot; ok is false then.
func readBody(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "")
			return nil, false
		}
		writeError(w, http.StatusBadRequest, errBody.Error(), "")
		return nil, false
	}
	return body, true
}

// bodyBuffers hold purchase bodies while they are decoded.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// readPooledBody is readBody into a buffer of bodyBuffers, which the caller puts back once done
// with the body.
func readPooledBody(w http.ResponseWriter, r *http.Request) (buf *[]byte, ok bool) {
	buf = bodyBuffers.Get().(*[]byte)
	b := (*buf)[:0]
	rd := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == nil {
			continue
		}
		*buf = b
		if errors.Is(err, io.EOF) {
			return buf, true
		}
		bodyBuffers.Put(buf)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "")
			return nil, false
		}
		writeError(w, http.StatusBadRequest, errBody.Error(), "")
		return nil, false
	}
}

func (s *Service) handlePurchase(w http.ResponseWriter, r *http.Request) {
	user, err := s.authenticate(r.Header.Values("Authorization"))
	if err != nil {
		s.writeLedgerError(w, r, s.http.refused(err))
		return
	}
	buf, ok := readPooledBody(w, r)
	if !ok {
		return
	}
	req, err := DecodePurchase(*buf)
	bodyBuffers.Put(buf)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	if err := claimUser(user, &req); err != nil {
		s.writeLedgerError(w, r, s.http.refused(err))
		return
	}
	rc, err := s.purchase(r.Context(), s.http, req)
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	if rc.Registered {
		writeReply(w, http.StatusAccepted, purchaseReply{Success: true, Message: msgRegistered, OrderID: rc.OrderID})
		return
	}
	writeReply(w, http.StatusOK, purchaseReply{Success: true, Message: "order placed successfully", OrderID: rc.OrderID})
}

// itemReply is the JSON reply of GET /api/items/{item_id}.
type itemReply struct {
	ItemID       string     `json:"item_id"`
	Stock        int64      `json:"stock"`
	PerUserLimit int64      `json:"per_user_limit"`
	StartsAt     *time.Time `json:"starts_at,omitempty"`
	EndsAt       *time.Time `json:"ends_at,omitempty"`
	PayWithin    string     `json:"pay_within,omitempty"`
	// Draw is set for an item sold by a draw.
	Draw *drawReply `json:"draw,omitempty"`
	// Status is "closed" once the item's sale was closed for good, absent before.
	Status string `json:"status,omitempty"`
}

func (s *Service) handleItem(w http.ResponseWriter, r *http.Request) {
	it, err := s.ledger.Item(r.Context(), mux.Vars(r)["item_id"])
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newItemReply(it))
}

func newItemReply(it ledger.Item) itemReply {
	reply := itemReply{ItemID: it.ItemID, Stock: it.Stock, PerUserLimit: it.Limit}
	if !it.Start.IsZero() {
		reply.StartsAt = &it.Start
	}
	if !it.End.IsZero() {
		reply.EndsAt = &it.End
	}
	if it.PayWithin > 0 {
		reply.PayWithin = it.PayWithin.String()
	}
	reply.Draw = newDrawReply(it, time.Now())
	if it.Closed {
		reply.Status = "closed"
	}
	return reply
}

// orderReply is the JSON reply of GET /api/orders/{order_id}.
type orderReply struct {
	OrderID   string    `json:"order_id"`
	RequestID string    `json:"request_id"`
	UserID    string    `json:"user_id"`
	ItemID    string    `json:"item_id"`
	Quantity  int64     `json:"quantity"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`

	// PayBy is the payment deadline under a pay-within rule.
	PayBy *time.Time `json:"pay_by,omitempty"`
}

func (s *Service) handleOrder(w http.ResponseWriter, r *http.Request) {
	// A read has no body: the user is named by the query parameter user_id.
	named := r.URL.Query()["user_id"]
	if len(named) > 1 {
		writeError(w, http.StatusBadRequest, "invalid request: user_id given more than once", "")
		return
	}
	o, err := s.order(r.Context(), r.Header.Values("Authorization"), strings.Join(named, ""), mux.Vars(r)["order_id"])
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	reply := orderReply{OrderID: o.OrderID, RequestID: o.RequestID, UserID: o.UserID, ItemID: o.ItemID,
		Quantity: o.Quantity, Status: o.Status, CreatedAt: o.CreatedAt}
	if !o.PayBy.IsZero() {
		reply.PayBy = &o.PayBy
	}
	writeJSON(w, http.StatusOK, reply)
}

func (s *Service) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	failed := s.ready(ctx)
	if len(failed) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
		return
	}
	down := make([]string, 0, len(failed))
	for name, why := range failed {
		s.log.Warn("not ready", "dependency", name, "err", why)
		down = append(down, name)
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "down": down})
}

// writeLedgerError answers err through the HTTP error table; internal errors are logged here,
// once, and answered without their text.
func (s *Service) writeLedgerError(w http.ResponseWriter, r *http.Request, err error) {
	writeLedgerError(w, r, s.log, err)
}

func writeLedgerError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, msg, ok := httpError(err)
	if !ok {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	// Only a conflict carries an order and only a 401 a challenge: the common refusals skip
	// the lookups (errors.As costs an allocation each).
	orderID := ""
	if status == http.StatusConflict {
		var dup *ledger.DuplicateError
		if errors.As(err, &dup) {
			orderID = dup.OrderID
		}
	}
	if status == http.StatusUnauthorized {
		var te *TokenError
		if errors.As(err, &te) {
			w.Header().Set("WWW-Authenticate", te.challenge())
		}
	}
	writeError(w, status, msg, orderID)
}

func writeError(w http.ResponseWriter, status int, msg, orderID string) {
	writeReply(w, status, purchaseReply{Success: false, Message: msg, OrderID: orderID})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
