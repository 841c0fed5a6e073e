package ledger

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

// A draw item is sold by a lottery instead of first come, first served. Until its draw time,
// a purchase registers an entry (an order event with the draw marker, no stock, one per
// user). At the draw, the seed whose SHA-256 was published at creation is revealed; each
// entry's rank is HMAC-SHA256(seed, user_id), and the entries of the lowest ranks win as many
// units as the item holds. Winners are reserved until their pay_by like any order under a
// pay-within rule; the others wait in rank order and are promoted as units come back. Every
// step is an event, so that anyone holding the seed can check the result (VerifyDraw).

// The event types of draws.
const (
	// EventWon: an entry won at the draw; it is reserved until pay_by.
	EventWon EventType = "won"
	// EventWaitlisted: entries that did not win at the draw wait at their ranks: one event per
	// batch lists them (Orders, ranks Rank, Rank+1, ...).
	EventWaitlisted EventType = "waitlisted"
	// EventPromoted: a waitlisted entry took units that came back; reserved until pay_by.
	EventPromoted EventType = "promoted"
	// EventLost: waitlisted entries can no longer be promoted (every unit is paid): one event
	// lists them (Orders); a ledger written before that has one event per entry (OrderID).
	EventLost EventType = "lost"
)

// The states of a draw entry before it is reserved (then: paid, cancelled, expired).
const (
	StateRegistered = "registered"
	StateWaitlisted = "waitlisted"
	StateLost       = "lost"
)

// Errors of draws.
var (
	// ErrRegistrationClosed: the draw time has passed; no more entries.
	ErrRegistrationClosed = errors.New("registration closed: the draw has taken place")
	// ErrNotDraw: the item is not sold by a draw.
	ErrNotDraw = errors.New("item has no draw")
	// ErrSeedMismatch: the seed's SHA-256 is not the commitment published with the item.
	ErrSeedMismatch = errors.New("seed does not match the item's commitment")
	// ErrDrawNotDue: the draw time has not come (by Redis's clock).
	ErrDrawNotDue = errors.New("draw time has not come")
	// ErrNotWon: the order is a draw entry that holds no units (registered, waitlisted, lost):
	// there is nothing to pay or cancel.
	ErrNotWon = errors.New("draw entry has not won")
)

var (
	drawEnterScript   = redis.NewScript(lua.DrawEnter)
	drawPromoteScript = redis.NewScript(lua.DrawPromote)
)

// SeedCommitment returns the commitment published for seed: its SHA-256, in hex.
func SeedCommitment(seed []byte) string {
	sum := sha256.Sum256(seed)
	return hex.EncodeToString(sum[:])
}

// DrawRank returns user's rank in the draw of seed: HMAC-SHA256(seed, user_id). Lower wins.
func DrawRank(seed []byte, user string) [32]byte {
	m := hmac.New(sha256.New, seed)
	m.Write([]byte(user))
	var r [32]byte
	m.Sum(r[:0])
	return r
}

// validateDraw checks the draw fields of a stock change.
func validateDraw(ch StockChange) error {
	switch {
	case ch.DrawAt.IsZero() || ch.DrawAt.UnixMilli() <= 0:
		return invalid("draw time must be after 1970-01-01T00:00:00Z")
	case len(ch.DrawCommit) != 64 || !isLowerHex(ch.DrawCommit):
		return invalid("draw commitment must be the SHA-256 of the seed in 64 lowercase hex digits")
	case ch.PayWithin == nil || *ch.PayWithin <= 0:
		return invalid("a draw needs a pay-within rule: winners are reserved until they pay")
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// errNoDraw: draw_enter.lua found the item not a draw (or unknown): purchase.lua decides.
var errNoDraw = errors.New("not a draw item")

// enter registers req as an entry in the draw of its item: called once purchase.lua answered
// code 9 for the item. Errors: errNoDraw, the refusals of Purchase, ErrItemClosed,
// ErrRegistrationClosed, ErrUnavailable.
func (l *Ledger) enter(ctx context.Context, req PurchaseRequest) (Receipt, error) {
	k := l.keys
	p := k.Partition(req.ItemID)
	keys := []string{k.Rules(req.ItemID), k.Requests(req.ItemID), k.DrawEntries(req.ItemID), k.Events(p), k.Stock(req.ItemID)}
	v, err := drawEnterScript.Run(ctx, l.rdb, keys, req.ItemID, req.UserID, req.RequestID, req.Quantity, l.idemTTL, p, k.OrderPrefix(p)).Result()
	if err != nil {
		return Receipt{}, redisErr("enter draw", err)
	}
	a, code, err := scriptReply(v, 3)
	if err != nil {
		return Receipt{}, err
	}
	orderID, _ := a[1].(string)
	stock, _ := a[2].(int64)
	switch code {
	case 0:
		return Receipt{OrderID: orderID, Stock: stock, Registered: true}, nil
	case 1:
		return Receipt{}, errNoDraw
	case 2, 3, 4, 5, 7:
		return Receipt{}, refusal(code, orderID)
	case 8:
		return Receipt{}, ErrRegistrationClosed
	case 9:
		return Receipt{}, ErrItemClosed
	}
	return Receipt{}, fmt.Errorf("draw enter script: unknown code %d", code)
}

// Entry is one entry of a draw, as the ledger recorded it.
type Entry struct {
	OrderID, UserID, RequestID string
	Quantity                   int64
	Placed                     time.Time
	// StreamID is the entry's order event.
	StreamID string
	Rank     [32]byte
}

// EventSource calls fn with every event of partition p in ledger order (for a ledger whose
// stream is trimmed: the archived events, then the stream's). fn's error stops it.
type EventSource func(ctx context.Context, p int, fn func(Event) error) error

// StreamSource reads partition p's stream from its start (an EventSource).
func (l *Ledger) StreamSource(ctx context.Context, p int, fn func(Event) error) error {
	return l.StreamFrom(ctx, p, "", fn)
}

// StreamFrom calls fn with every event of partition p's stream after the stream ID after (""
// for its start), in pages of 1,000 entries (one XRANGE each, so that Redis is never held
// long). fn's error stops it.
func (l *Ledger) StreamFrom(ctx context.Context, p int, after string, fn func(Event) error) error {
	const pageSize = 1000
	for {
		events, err := l.Range(ctx, p, after, pageSize)
		if err != nil {
			return err
		}
		for _, e := range events {
			if err := fn(e); err != nil {
				return err
			}
		}
		// Fewer events than the page's entries: the stream has ended (an entry holds one or
		// more events).
		if len(events) < pageSize {
			return nil
		}
		after = events[len(events)-1].StreamID
	}
}

// DrawStatus is the progress of an item's draw.
type DrawStatus struct {
	// Cursor is how many entries have their outcome written; Done is set once all have.
	Cursor int64
	Units  int64
	Done   bool
	// Waitlisted is how many entries still wait.
	Waitlisted int64
}

// DrawStatus returns the progress of item's draw (zero before it began).
func (l *Ledger) DrawStatus(ctx context.Context, item string) (DrawStatus, error) {
	pipe := l.rdb.Pipeline()
	st := pipe.HMGet(ctx, l.keys.DrawState(item), "cursor", "units", "done")
	wl := pipe.LLen(ctx, l.keys.Waitlist(item))
	if _, err := pipe.Exec(ctx); err != nil {
		return DrawStatus{}, redisErr("read draw state", err)
	}
	v := st.Val()
	done, _ := v[2].(string)
	return DrawStatus{Cursor: intField(v[0]), Units: intField(v[1]), Done: done == "1", Waitlisted: wl.Val()}, nil
}

// PromoteResult counts what PromoteDraws did.
type PromoteResult struct {
	Promoted, Lost int
	// Finished lists the items whose waitlist ran out this round, with the units left over.
	Finished map[string]int64
}

// maxPromoteSteps bounds the script calls of one item in one round.
const maxPromoteSteps = 1000

// PromoteDraws moves every drawn item of every partition on: waitlisted entries are promoted,
// in rank order, into units that came back, and once every unit is paid the waitlist is
// marked lost, in batches of lostBatch. Each step is one draw_promote.lua call, decided in
// Redis, so any number of sweepers may run it at once.
func (l *Ledger) PromoteDraws(ctx context.Context, lostBatch int) (PromoteResult, error) {
	var res PromoteResult
	k := l.keys
	for p := range k.Partitions() {
		items, err := l.rdb.SMembers(ctx, k.Draws(p)).Result()
		if err != nil {
			return res, redisErr("list drawn items", err)
		}
		for _, item := range items {
			if ValidateItemID(item) != nil || k.Partition(item) != p {
				continue
			}
			keys := []string{k.Rules(item), k.Stock(item), k.Events(p), k.Due(p), k.Waitlist(item), k.Held(item), k.Draws(p), k.DrawState(item)}
			for range maxPromoteSteps {
				v, err := drawPromoteScript.Run(ctx, l.rdb, keys, item, k.OrderPrefix(p), k.Users(item), max(lostBatch, 1)).Result()
				if err != nil {
					return res, redisErr("promote draw", err)
				}
				a, code, err := scriptReply(v, 3)
				if err != nil {
					return res, err
				}
				if code == 0 {
					break
				}
				if code == 1 {
					res.Promoted++
					continue
				}
				if code == 2 {
					n, _ := a[1].(int64)
					res.Lost += int(n)
					continue
				}
				if code == 3 {
					if res.Finished == nil {
						res.Finished = map[string]int64{}
					}
					res.Finished[item], _ = a[2].(int64)
				}
				break
			}
		}
	}
	return res, nil
}

// drawWaiting reports whether state is that of a draw entry holding no units.
func drawWaiting(state string) bool {
	return state == StateRegistered || state == StateWaitlisted || state == StateLost
}

// decodeDraw decodes a won, waitlisted, promoted or lost event.
func decodeDraw(e *Event, f *fieldReader) {
	if e.Type == EventWaitlisted || e.Type == EventLost && f.str("order_id") == "" {
		if e.Type == EventWaitlisted {
			e.Rank = f.int("rank")
		}
		e.Time = time.UnixMilli(f.int("ts"))
		if s := f.str("orders"); s != "" {
			e.Orders = strings.Split(s, ",")
		} else {
			f.fail("orders", "missing")
		}
		return
	}
	e.OrderID, e.UserID, e.RequestID = f.str("order_id"), f.str("user_id"), f.str("request_id")
	e.Quantity = f.int("quantity")
	e.Time = time.UnixMilli(f.int("ts"))
	e.Placed = time.UnixMilli(f.int("order_ts"))
	if e.Type == EventWon || e.Type == EventPromoted {
		e.PayBy = time.UnixMilli(f.int("pay_by"))
	}
	if e.Type != EventLost {
		e.Rank = f.int("rank")
	}
	if e.OrderID == "" || e.UserID == "" || e.RequestID == "" || e.Quantity < 1 {
		f.fail(string(e.Type), "missing order_id, user_id, request_id or quantity")
	}
}
