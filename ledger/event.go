package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// EventVersion is the version (field v) of the events this code writes and reads.
const EventVersion = 1

// EventType names a kind of ledger event. The set is open: a reader that meets a type it does
// not know reports it as malformed rather than guessing.
type EventType string

// The ledger event types.
const (
	// EventOrder: an order was placed (stock already decremented).
	EventOrder EventType = "order"
	// EventStock: an item's stock or rules were changed by an operator.
	EventStock EventType = "stock"
	// EventRestock: an order was cancelled and its units given back.
	EventRestock EventType = "restock"
	// EventOrders: one entry holding several orders of one partition (see DecodeEntry). It
	// decodes into one EventOrder event per order: only a malformed one keeps this type.
	EventOrders EventType = "orders"
)

// Event is one decoded ledger event. Most entries hold one event; an `orders` entry holds
// several orders, each decoded into an event of its own (see DecodeEntry). Which fields are
// set depends on Type.
type Event struct {
	// Partition and StreamID locate the entry that holds the event: the order events of one
	// `orders` entry share it. A reader's position (the last entry read, what XACK takes) is
	// a StreamID; an order is named by OrderID, never by StreamID.
	Partition int
	StreamID  string
	Type      EventType
	ItemID    string

	// order: OrderID is the order's own ID, <partition>-<ms>-<seq>: Partition and StreamID
	// for an `order` entry; within an `orders` entry, the order's sequence number with the
	// entry's ms (at or before StreamID, after the entry before it). restock, cancelled,
	// expired: the closed order, with the order's request, user and quantity copied from it,
	// and the time of the order (restock) or of the change (cancelled, expired). paid: the
	// paid order, its user and the time of the payment.
	OrderID   string
	RequestID string
	UserID    string
	Quantity  int64
	Time      time.Time
	// restock: why the order was cancelled.
	Reason string
	// order: PayBy is the payment deadline of an order placed under a pay-within rule (zero
	// without one). paid: PaymentRef is the payment's reference, Time when it was accepted.
	PayBy      time.Time
	PaymentRef string
	// paid, cancelled, expired: Placed is the order's time, PayBy its deadline, RequestID and
	// Quantity the order's (so that each can write the whole order row on its own).
	Placed time.Time

	// stock: Op and Quantity change the counter (set or add); Stock is the counter after it;
	// Limit, StartMS and EndMS are the rules after it.
	Op      StockOp
	Stock   int64
	Limit   int64
	StartMS int64
	EndMS   int64
	// PayWithinMS is the item's payment deadline after the change (0: no payment needed;
	// absent in events written before the rule existed).
	PayWithinMS int64
	// DrawAtMS and DrawCommit: the item is sold by a draw at that time (0: not a draw), whose
	// seed has that SHA-256 commitment (hex).
	DrawAtMS   int64
	DrawCommit string

	// order: Draw marks an entry in a draw (it took no stock). won, waitlisted, promoted:
	// Rank is the entry's 0-based position in the draw's rank order.
	Draw bool
	Rank int64
	// waitlisted: the entries waitlisted, in rank order from Rank.
	Orders []string
	// Created marks the stock event that created the item (absent in events written before
	// it was recorded).
	Created bool
	// Closed is set by the event that closed the item's sale (Op StockClose).
	Closed bool

	// Malformed is set when the entry could not be decoded; the other fields then hold what
	// could be read, and Partition and StreamID are always set.
	Malformed error
}

// ErrMalformed marks a stream entry that cannot be decoded.
var ErrMalformed = errors.New("malformed ledger entry")

// OrderID returns the order ID of the order at streamID in partition p: the stream ID of its
// `order` entry, or <ms>-<seq> of its place in an `orders` entry.
func OrderID(p int, streamID string) string { return strconv.Itoa(p) + "-" + streamID }

// ParseOrderID splits an order ID into its partition and stream ID. It accepts only the one
// spelling OrderID writes, <partition>-<ms>-<seq>, each part a decimal that fits in a uint64,
// without sign or leading zeros ("0" itself is fine), so that one order has exactly one ID:
// Redis would read "02-01-0" as stream ID 2-1 while MySQL compares the text. Errors: ErrInvalid
// for anything else, ErrUnknownOrder for a well-formed ID whose partition no ledger can have.
func ParseOrderID(id string) (p int, streamID string, err error) {
	ps, sid, _ := strings.Cut(id, "-")
	ms, seq, _ := strings.Cut(sid, "-")
	part, okP := canonicalUint(ps)
	_, okMS := canonicalUint(ms)
	_, okSeq := canonicalUint(seq)
	if !okP || !okMS || !okSeq {
		return 0, "", fmt.Errorf("%w: order_id %q", ErrInvalid, id)
	}
	if part >= MaxPartitions {
		return 0, "", fmt.Errorf("order_id %q: %w", id, ErrUnknownOrder)
	}
	return int(part), sid, nil
}

// canonicalUint parses s as a uint64 written in canonical decimal: digits only, no leading
// zero unless s is "0".
func canonicalUint(s string) (uint64, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// DecodeEntry decodes the stream entry msg of partition p into its events: the orders of an
// `orders` entry in the order of their sequence numbers (see decodeOrders), the one event of
// any other entry. Errors match ErrMalformed; the entry is then returned as one event with
// what could be read, Malformed set to the error: a reader reports it, and keeps its place.
func DecodeEntry(p int, msg redis.XMessage) ([]Event, error) {
	if t, _ := msg.Values["type"].(string); t == string(EventOrders) {
		return decodeOrders(p, msg)
	}
	e, err := decodeEvent(p, msg)
	e.Malformed = err
	return []Event{e}, err
}

// decodeEvent decodes an entry that holds one event.
func decodeEvent(p int, msg redis.XMessage) (Event, error) {
	f := fields(msg.Values)
	e := Event{Partition: p, StreamID: msg.ID, Type: EventType(f.str("type")), ItemID: f.str("item_id")}
	if v := f.int("v"); v != EventVersion {
		f.fail("v", "unsupported version")
	}
	switch e.Type {
	case EventOrder:
		e.OrderID = OrderID(p, msg.ID)
		e.RequestID, e.UserID = f.str("request_id"), f.str("user_id")
		e.Quantity = f.int("quantity")
		e.Time = time.UnixMilli(f.int("ts"))
		if _, ok := msg.Values["pay_by"]; ok {
			e.PayBy = time.UnixMilli(f.int("pay_by"))
		}
		_, e.Draw = msg.Values["draw"]
		if e.RequestID == "" || e.UserID == "" || e.Quantity < 1 {
			f.fail("order", "missing request_id, user_id or quantity")
		}
	case EventWon, EventWaitlisted, EventPromoted, EventLost:
		decodeDraw(&e, f)
	case EventRestock:
		e.OrderID, e.Reason = f.str("order_id"), f.str("reason")
		e.RequestID, e.UserID = f.str("request_id"), f.str("user_id")
		e.Quantity = f.int("quantity")
		e.Time = time.UnixMilli(f.int("ts"))
		if e.OrderID == "" || e.Quantity < 1 {
			f.fail("restock", "missing order_id or quantity")
		}
	case EventPaid, EventCancelled, EventExpired:
		e.OrderID, e.UserID, e.RequestID = f.str("order_id"), f.str("user_id"), f.str("request_id")
		e.PaymentRef = f.str("payment_ref")
		e.Quantity = f.int("quantity")
		e.Time = time.UnixMilli(f.int("ts"))
		e.Placed = time.UnixMilli(f.int("order_ts"))
		e.PayBy = time.UnixMilli(f.int("pay_by"))
		if e.OrderID == "" || e.UserID == "" || e.RequestID == "" || e.Quantity < 1 || (e.Type == EventPaid && e.PaymentRef == "") {
			f.fail(string(e.Type), "missing order_id, user_id, request_id, quantity or payment_ref")
		}
	case EventStock:
		e.Op = StockOp(f.str("op"))
		e.Quantity, e.Stock = f.int("quantity"), f.int("stock")
		e.Limit, e.StartMS, e.EndMS = f.int("limit"), f.int("start_ms"), f.int("end_ms")
		if _, ok := msg.Values["pay_within_ms"]; ok {
			e.PayWithinMS = f.int("pay_within_ms")
		}
		if _, ok := msg.Values["draw_at_ms"]; ok {
			e.DrawAtMS, e.DrawCommit = f.int("draw_at_ms"), f.str("draw_commit")
		}
		e.Created = f.str("created") == "1"
		e.Closed = f.str("closed") == "1"
		if e.Op != StockSet && e.Op != StockAdd && e.Op != StockClose {
			f.fail("op", "want set, add or close")
		}
	default:
		f.fail("type", "unknown event type")
	}
	if e.ItemID == "" {
		f.fail("item_id", "missing")
	}
	if f.err != nil {
		return e, fmt.Errorf("%w %d/%s: %w", ErrMalformed, p, msg.ID, f.err)
	}
	return e, nil
}

// fields reads typed stream fields, keeping the first problem.
type fieldReader struct {
	m   map[string]any
	err error
}

func fields(m map[string]any) *fieldReader { return &fieldReader{m: m} }

func (f *fieldReader) str(name string) string {
	s, _ := f.m[name].(string)
	return s
}

func (f *fieldReader) int(name string) int64 {
	s, ok := f.m[name].(string)
	if !ok {
		f.fail(name, "missing")
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f.fail(name, "not an integer")
	}
	return n
}

func (f *fieldReader) fail(name, why string) {
	if f.err == nil {
		f.err = fmt.Errorf("field %s: %s", name, why)
	}
}

// Range returns the events of up to count entries of partition p with stream IDs after the
// exclusive start ("" for the beginning), in stream order: every event of each entry (an
// `orders` entry holds several), so that the last event's StreamID is the position to read on
// from. An entry that cannot be decoded comes back as one event with Malformed set, so a
// reader can report it without losing its place.
func (l *Ledger) Range(ctx context.Context, p int, after string, count int64) ([]Event, error) {
	return l.RangeTo(ctx, p, after, "+", count)
}

// decodeOrMark decodes msg into its events (DecodeEntry), marking the entry Malformed (one
// event) if it does not decode or an event names an item of another partition (no script
// writes such an entry).
func (l *Ledger) decodeOrMark(p int, msg redis.XMessage) []Event {
	events, err := DecodeEntry(p, msg)
	if err != nil {
		return events
	}
	for _, e := range events {
		if q := l.keys.Partition(e.ItemID); q != p {
			why := fmt.Sprintf("item_id %q belongs to partition %d", e.ItemID, q)
			if msg.Values["type"] == string(EventOrders) {
				bad, _ := malformedOrders(p, msg, why)
				return bad
			}
			e.Malformed = fmt.Errorf("%w %d/%s: %s", ErrMalformed, p, msg.ID, why)
			return []Event{e}
		}
	}
	return events
}

// Order returns the order event of orderID from the ledger stream, or ErrUnknownOrder. The
// order is in the first entry at or after its stream ID: its own `order` entry, or the
// `orders` entry that holds it.
func (l *Ledger) Order(ctx context.Context, orderID string) (Event, error) {
	p, sid, err := ParseOrderID(orderID)
	if err != nil {
		return Event{}, err
	}
	if p >= l.keys.Partitions() {
		return Event{}, ErrUnknownOrder
	}
	msgs, err := l.rdb.XRangeN(ctx, l.keys.Events(p), sid, "+", 1).Result()
	if err != nil {
		return Event{}, redisErr("read order", err)
	}
	if len(msgs) == 0 {
		return Event{}, ErrUnknownOrder
	}
	events, err := DecodeEntry(p, msgs[0])
	if err != nil {
		// A malformed entry at the ID, or an `orders` one that may hold it, hides the order;
		// any other entry after the ID says nothing of it.
		if msgs[0].ID == sid || events[0].Type == EventOrders {
			return Event{}, err
		}
		return Event{}, ErrUnknownOrder
	}
	for _, e := range events {
		if e.Type == EventOrder && e.OrderID == orderID {
			return e, nil
		}
	}
	return Event{}, ErrUnknownOrder
}
