package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
)

// Ledger is what the admin routes and the live board need from the ledger.
type Ledger interface {
	ChangeStock(ctx context.Context, item string, ch ledger.StockChange) (ledger.StockResult, error)
	WinnerStats() ledger.WinnerStats
	CloseItem(ctx context.Context, item string) (string, error)
	Item(ctx context.Context, item string) (ledger.Item, error)
	Items(ctx context.Context) ([]string, error)
	Pending(ctx context.Context, group string, f ledger.PendingFilter) (ledger.PendingReport, error)
	Backlog(ctx context.Context, p int, group string) (ledger.Backlog, error)
	Range(ctx context.Context, p int, after string, count int64) ([]ledger.Event, error)
	LoadCheckpoint(ctx context.Context, p int) (ledger.Checkpoint, error)
	CheckpointID(ctx context.Context, p int) (string, error)
	RetainState(ctx context.Context, p int, retain time.Duration) (ledger.RetainState, error)
	Keys() ledger.Keys
	// Sessions keep the board's sign-ins.
	Sessions
}

// Options configure the admin routes and the live board.
type Options struct {
	// Token is the admin token: the bearer token of scripts and the password of the board's
	// sign-in. Empty mounts nothing.
	Token string
	// Ledger is the ledger administered; Group the projector's consumer group.
	Ledger Ledger
	Group  string
	// Audit runs the books' audit (projector.Audit); nil where there is no MySQL (ingest): the
	// board then shows the audit as unavailable.
	Audit AuditFunc
	// IdleWarn is how long a consumer holding entries may stay idle before the board warns
	// (default 30 s).
	IdleWarn time.Duration
	// Retain is the ledger's retention window, for the retention the board and
	// GET /admin/pending report (default ledger.DefaultRetain).
	Retain time.Duration
	// SessionTTL is how long a board sign-in lasts (default 12 h).
	SessionTTL time.Duration
	// SecureCookie marks the session cookie Secure even on plain HTTP (behind a TLS proxy);
	// it is always Secure when the request came over TLS.
	SecureCookie bool
	// AuthFailures failed sign-ins or bearer attempts from one client address within
	// AuthWindow make every attempt from it answered 429 until the window ends (defaults 5
	// and 1 minute).
	AuthFailures int
	AuthWindow   time.Duration
	// Now is the clock of sessions and of the brake on failed attempts (default time.Now).
	Now func() time.Time
	// Metrics are the purchase path's metrics, which the board shows (ingest.NewMetrics).
	Metrics *ingest.Metrics
	// Log is where the routes and the board log (default: nowhere).
	Log *slog.Logger
}

// Mount adds the operator routes under /admin. Scripts authenticate with
// `Authorization: Bearer <token>`; the board's page (GET /admin/) signs in with the same
// token and then holds a session cookie. Routes: GET /admin/pending (the projector group's
// pending entries), PUT /admin/items/{item_id} (stock and sale rules, recorded as a stock
// event), GET /admin/board (the board's snapshot), GET /admin/events (the same, pushed every
// second as Server-Sent Events), POST /admin/audit, and the session's /admin/login,
// /admin/logout and /admin/session. With an empty token nothing is mounted and it returns
// nil. The returned Board must be Run for the snapshots to be taken.
func Mount(r *mux.Router, o Options) *Board {
	if o.Token == "" {
		return nil
	}
	if o.IdleWarn <= 0 {
		o.IdleWarn = 30 * time.Second
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AuthFailures <= 0 {
		o.AuthFailures = 5
	}
	if o.AuthWindow <= 0 {
		o.AuthWindow = time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &routes{log: o.Log.With("component", "admin")}
	auth := newAdminAuth(o, s.log)
	b := newBoard(o, auth)
	// The page and its assets hold no data; they are public so that the sign-in form shows.
	r.Handle("/admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently)).Methods(http.MethodGet)
	r.HandleFunc("/admin/", servePage("index.html")).Methods(http.MethodGet)
	r.HandleFunc("/admin/board.js", servePage("board.js")).Methods(http.MethodGet)
	r.HandleFunc("/admin/board.css", servePage("board.css")).Methods(http.MethodGet)
	r.HandleFunc("/admin/login", auth.handleLogin).Methods(http.MethodPost)

	// The routes behind credentials are mounted one by one on r, each wrapped, not on a
	// PathPrefix subrouter: mux lets a subrouter's later routes clear a method mismatch, which
	// then answered 404 where 405 is meant.
	guarded := func(path, method string, h http.HandlerFunc) {
		r.Handle("/admin"+path, auth.require(h)).Methods(method)
	}
	guarded("/pending", http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.handlePending(w, r, o.Ledger, o.Group, o.Retain) })
	guarded("/items/{item_id}", http.MethodPut, func(w http.ResponseWriter, r *http.Request) { s.handlePutItem(w, r, o.Ledger) })
	guarded("/session", http.MethodGet, auth.handleSession)
	guarded("/logout", http.MethodPost, auth.handleLogout)
	guarded("/board", http.MethodGet, b.handleSnapshot)
	guarded("/events", http.MethodGet, b.handleEvents)
	guarded("/audit", http.MethodPost, b.handleAudit)
	return b
}

// routes holds what the admin routes' handlers share.
type routes struct{ log *slog.Logger }

// writeLedgerError answers err as the purchase path does (ingest.WriteLedgerError).
func (s *routes) writeLedgerError(w http.ResponseWriter, r *http.Request, err error) {
	ingest.WriteLedgerError(w, r, s.log, err)
}

func (s *routes) handlePending(w http.ResponseWriter, r *http.Request, a Ledger, group string, retain time.Duration) {
	q := r.URL.Query()
	f := ledger.PendingFilter{ItemID: q.Get("item"), Consumer: q.Get("consumer")}
	if v := q.Get("min_idle"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			ingest.WriteError(w, http.StatusBadRequest, "min_idle must be a duration such as 30s")
			return
		}
		f.MinIdle = d
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			ingest.WriteError(w, http.StatusBadRequest, "limit must be 1..10000")
			return
		}
		f.Limit = n
	}
	f.Retain = retain
	rep, err := a.Pending(r.Context(), group, f)
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	ingest.WriteJSON(w, http.StatusOK, rep)
}

// itemBody is the JSON body of PUT /admin/items/{item_id}. Stock sets the stock, Add changes
// it; with neither only the rules change. A window bound of "" clears it. Close, true and
// alone, closes the item's sale for good.
type itemBody struct {
	Close        *bool   `json:"close"`
	Stock        *int64  `json:"stock"`
	Add          *int64  `json:"add"`
	PerUserLimit *int64  `json:"per_user_limit"`
	StartsAt     *string `json:"starts_at"`
	EndsAt       *string `json:"ends_at"`
	PayWithin    *string `json:"pay_within"`
	// DrawAt and DrawCommitment make the item a draw item (see ledger.StockChange).
	DrawAt         *string `json:"draw_at"`
	DrawCommitment *string `json:"draw_commitment"`
}

func (s *routes) handlePutItem(w http.ResponseWriter, r *http.Request, a Ledger) {
	body, ok := ingest.ReadBody(w, r)
	if !ok {
		return
	}
	b, err := decodeItemBody(body)
	if err != nil {
		ingest.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if b.Close != nil {
		if !*b.Close || b.Stock != nil || b.Add != nil || b.PerUserLimit != nil || b.StartsAt != nil || b.EndsAt != nil || b.PayWithin != nil {
			ingest.WriteError(w, http.StatusBadRequest, "close must be true and alone")
			return
		}
		s.closeItem(w, r, a, mux.Vars(r)["item_id"])
		return
	}
	ch, msg := b.change()
	if msg != "" {
		ingest.WriteError(w, http.StatusBadRequest, msg)
		return
	}
	item := mux.Vars(r)["item_id"]
	res, err := a.ChangeStock(r.Context(), item, ch)
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	it, err := a.Item(r.Context(), item)
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	reply := changeReply{ItemReply: ingest.NewItemReply(it)}
	if !res.ReopenAt.IsZero() {
		reply.ReopenedAt = &res.ReopenAt
	}
	ingest.WriteJSON(w, http.StatusOK, reply)
}

// decodeItemBody reads the body of PUT /admin/items/{item_id} strictly (ingest.DecodeObject).
func decodeItemBody(body []byte) (itemBody, error) {
	var b itemBody
	err := ingest.DecodeObject(body, func(key string, dec *json.Decoder) error {
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
		case "pay_within":
			return dec.Decode(&b.PayWithin)
		case "draw_at":
			return dec.Decode(&b.DrawAt)
		case "draw_commitment":
			return dec.Decode(&b.DrawCommitment)
		case "close":
			return dec.Decode(&b.Close)
		}
		return ingest.ErrBody
	})
	return b, err
}

// change is the stock change b asks for, or the message of a 400 when b is not one.
func (b itemBody) change() (ch ledger.StockChange, refusal string) {
	ch = ledger.StockChange{Op: ledger.StockAdd, Limit: b.PerUserLimit}
	switch {
	case b.Stock != nil && b.Add != nil:
		return ch, "give stock or add, not both"
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
				return ch, "starts_at and ends_at must be RFC 3339 times or \"\""
			}
			if t.UnixMilli() <= 0 {
				return ch, "starts_at and ends_at must be after 1970-01-01T00:00:00Z"
			}
		}
		*bound.dst = &t
	}
	if b.PayWithin != nil {
		d, err := time.ParseDuration(*b.PayWithin)
		if *b.PayWithin == "" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return ch, "pay_within must be a duration such as 15m, or \"\""
		}
		ch.PayWithin = &d
	}
	if b.DrawAt != nil || b.DrawCommitment != nil {
		if b.DrawAt == nil || b.DrawCommitment == nil {
			return ch, "draw_at and draw_commitment go together"
		}
		t, err := time.Parse(time.RFC3339, *b.DrawAt)
		if err != nil {
			return ch, "draw_at must be an RFC 3339 time"
		}
		ch.DrawAt, ch.DrawCommit = &t, *b.DrawCommitment
	}
	return ch, ""
}

// closeItem closes item's sale for good and answers the item.
func (s *routes) closeItem(w http.ResponseWriter, r *http.Request, a Ledger, item string) {
	if _, err := a.CloseItem(r.Context(), item); err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	it, err := a.Item(r.Context(), item)
	if err != nil {
		s.writeLedgerError(w, r, err)
		return
	}
	ingest.WriteJSON(w, http.StatusOK, ingest.NewItemReply(it))
}

// changeReply is the reply of PUT /admin/items/{item_id}: the item, and when it came back on
// sale if the change gave units to an item that had none (the reply waits for that moment).
type changeReply struct {
	ingest.ItemReply
	ReopenedAt *time.Time `json:"reopened_at,omitempty"`
}
