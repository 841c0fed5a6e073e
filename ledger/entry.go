package ledger

import (
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// An `orders` entry holds the orders one purchase script call placed in its partition:
//
//	v 1  type orders  ts <unix ms>  orders <order> RS <order> ...
//
// Each order is item_id, user_id, request_id and quantity, then pay_by for an order with a
// payment deadline, separated by unitSep; the orders are joined by recordSep (no field of an
// order can hold either: item IDs are [A-Za-z0-9._-], user and request IDs hold no control
// character). The orders share ts. The entry's stream ID is <ms>-<last>: its N orders are
// <ms>-<last-N+1> .. <ms>-<last> in the order they are listed, so that each order keeps an ID
// of its own, <partition>-<ms>-<seq>, and an order's stream ID is after the entry before and
// at or before its own entry's. Every such entry has the same four fields, which Redis then
// stores once per stream node rather than in each entry.

// unitSep separates the parts of an order, recordSep the orders, in an `orders` entry (ASCII
// unit and record separators).
const (
	unitSep   = "\x1f"
	recordSep = "\x1e"
)

// decodeOrders decodes an `orders` entry into its order events, in ID order. Anything out of
// the format makes the whole entry one malformed event (see malformedOrders).
func decodeOrders(p int, msg redis.XMessage) ([]Event, error) {
	bad := func(why string, args ...any) ([]Event, error) {
		return malformedOrders(p, msg, fmt.Sprintf(why, args...))
	}
	pos, ok := parsePos(msg.ID)
	if !ok {
		return bad("stream ID %q does not parse", msg.ID)
	}
	f := fields(msg.Values)
	if v := f.int("v"); v != EventVersion {
		return bad("field v: unsupported version")
	}
	ts := f.int("ts")
	if f.err != nil || ts <= 0 {
		return bad("field ts: want a positive integer")
	}
	list, _ := msg.Values["orders"].(string)
	if len(msg.Values) != 4 || list == "" {
		return bad("want the fields v, type, ts and orders")
	}
	n := uint64(strings.Count(list, recordSep)) + 1
	if n > pos.seq+1 {
		return bad("%d orders cannot end at sequence number %d", n, pos.seq)
	}
	first, ms := pos.seq+1-n, strconv.FormatUint(pos.ms, 10)
	events := make([]Event, 0, n)
	for rec := range strings.SplitSeq(list, recordSep) {
		seq := strconv.FormatUint(first+uint64(len(events)), 10)
		e, err := decodeOrder(rec)
		if err != "" {
			return bad("order %s: %s", seq, err)
		}
		e.Partition, e.StreamID = p, msg.ID
		e.OrderID = OrderID(p, ms+"-"+seq)
		e.Time = time.UnixMilli(ts)
		events = append(events, e)
	}
	return events, nil
}

// decodeOrder decodes the value of one order of an `orders` entry; it returns why it does
// not decode, or "".
func decodeOrder(s string) (Event, string) {
	var parts [5]string
	n := 0
	for part := range strings.SplitSeq(s, unitSep) {
		if n == len(parts) {
			return Event{}, "more than 5 parts"
		}
		parts[n] = part
		n++
	}
	if n < 4 {
		return Event{}, "fewer than 4 parts"
	}
	e := Event{Type: EventOrder, ItemID: parts[0], UserID: parts[1], RequestID: parts[2]}
	if ValidateItemID(e.ItemID) != nil {
		return Event{}, "invalid item_id"
	}
	if e.UserID == "" || e.RequestID == "" {
		return Event{}, "empty user_id or request_id"
	}
	q, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil || q < 1 || q > MaxQuantity {
		return Event{}, fmt.Sprintf("quantity: want 1..%d", MaxQuantity)
	}
	e.Quantity = q
	if n == 5 {
		payBy, err := strconv.ParseInt(parts[4], 10, 64)
		if err != nil || payBy <= 0 {
			return Event{}, "pay_by: want a positive integer"
		}
		e.PayBy = time.UnixMilli(payBy)
	}
	return e, ""
}

// malformedOrders returns the `orders` entry msg as one malformed event. Its ItemID is the
// item its orders name when they all name the same valid one, else "": a reader that sets
// aside only the item of a malformed entry (the winner index) then sets aside the partition.
func malformedOrders(p int, msg redis.XMessage, why string) ([]Event, error) {
	err := fmt.Errorf("%w %d/%s: %s", ErrMalformed, p, msg.ID, why)
	e := Event{Partition: p, StreamID: msg.ID, Type: EventOrders, Malformed: err}
	list, _ := msg.Values["orders"].(string)
	for rec := range strings.SplitSeq(list, recordSep) {
		item, _, _ := strings.Cut(rec, unitSep)
		if ValidateItemID(item) != nil || (e.ItemID != "" && item != e.ItemID) {
			e.ItemID = ""
			break
		}
		e.ItemID = item
	}
	return []Event{e}, err
}

// ByEntry yields events, as the ledger's readers return them (whole entries, in stream
// order), one entry at a time: each run of events that share a StreamID.
func ByEntry(events []Event) iter.Seq[[]Event] {
	return func(yield func([]Event) bool) {
		for len(events) > 0 {
			n := 1
			for n < len(events) && events[n].StreamID == events[0].StreamID {
				n++
			}
			if !yield(events[:n]) {
				return
			}
			events = events[n:]
		}
	}
}
