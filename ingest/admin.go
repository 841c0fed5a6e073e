package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/flashsale/flashsale/ledger"
)

// Admin is what the admin routes need from the ledger.
type Admin interface {
	SetStock(ctx context.Context, item string, ch ledger.StockChange) (int64, error)
	Item(ctx context.Context, item string) (ledger.Item, error)
	Pending(ctx context.Context, group string, f ledger.PendingFilter) (ledger.PendingReport, error)
}

// MountAdmin adds the operator routes under /admin, behind `Authorization: Bearer token`:
// GET /admin/pending (the projector group's pending entries) and PUT /admin/items/{item_id}
// (stock and sale rules, recorded as a stock event). With an empty token nothing is mounted.
func (s *Service) MountAdmin(r *mux.Router, token string, a Admin, group string) {
	if token == "" {
		return
	}
	sub := r.PathPrefix("/admin").Subrouter()
	sub.Use(bearer(token))
	sub.HandleFunc("/pending", func(w http.ResponseWriter, r *http.Request) { s.handlePending(w, r, a, group) }).Methods(http.MethodGet)
	sub.HandleFunc("/items/{item_id}", func(w http.ResponseWriter, r *http.Request) { s.handlePutItem(w, r, a) }).Methods(http.MethodPut)
}

// bearer refuses requests without the token, comparing in constant time (of hashes, so that
// not even the length leaks).
func bearer(token string) mux.MiddlewareFunc {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			sum := sha256.Sum256([]byte(got))
			if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="flashsale admin"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func (s *Service) handlePending(w http.ResponseWriter, r *http.Request, a Admin, group string) {
	q := r.URL.Query()
	f := ledger.PendingFilter{ItemID: q.Get("item"), Consumer: q.Get("consumer")}
	if v := q.Get("min_idle"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "min_idle must be a duration such as 30s", "")
			return
		}
		f.MinIdle = d
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit must be 1..10000", "")
			return
		}
		f.Limit = n
	}
	rep, err := a.Pending(r.Context(), group, f)
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// itemBody is the JSON body of PUT /admin/items/{item_id}. Stock sets the stock, Add changes
// it; with neither only the rules change. A window bound of "" clears it.
type itemBody struct {
	Stock        *int64  `json:"stock"`
	Add          *int64  `json:"add"`
	PerUserLimit *int64  `json:"per_user_limit"`
	StartsAt     *string `json:"starts_at"`
	EndsAt       *string `json:"ends_at"`
}

func (s *Service) handlePutItem(w http.ResponseWriter, r *http.Request, a Admin) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var b itemBody
	err := decodeObject(body, func(key string, dec *json.Decoder) error {
		switch key {
		case "stock":
			return dec.Decode(&b.Stock)
		case "add":
			return dec.Decode(&b.Add)
		case "per_user_limit":
			return dec.Decode(&b.PerUserLimit)
		case "starts_at":
			return dec.Decode(&b.StartsAt)
		case "ends_at":
			return dec.Decode(&b.EndsAt)
		}
		return errBody
	})
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	ch := ledger.StockChange{Op: ledger.StockAdd, Limit: b.PerUserLimit}
	switch {
	case b.Stock != nil && b.Add != nil:
		writeError(w, http.StatusBadRequest, "give stock or add, not both", "")
		return
	case b.Stock != nil:
		ch.Op, ch.Quantity = ledger.StockSet, *b.Stock
	case b.Add != nil:
		ch.Quantity = *b.Add
	}
	for _, bound := range []struct {
		v   *string
		dst **time.Time
	}{{b.StartsAt, &ch.Start}, {b.EndsAt, &ch.End}} {
		if bound.v == nil {
			continue
		}
		t := time.Time{}
		if *bound.v != "" {
			var err error
			if t, err = time.Parse(time.RFC3339, *bound.v); err != nil {
				writeError(w, http.StatusBadRequest, "starts_at and ends_at must be RFC 3339 times or \"\"", "")
				return
			}
			if t.UnixMilli() <= 0 {
				writeError(w, http.StatusBadRequest, "starts_at and ends_at must be after 1970-01-01T00:00:00Z", "")
				return
			}
		}
		*bound.dst = &t
	}
	item := mux.Vars(r)["item_id"]
	if _, err := a.SetStock(r.Context(), item, ch); err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	it, err := a.Item(r.Context(), item)
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newItemReply(it))
}
