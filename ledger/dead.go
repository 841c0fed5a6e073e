package ledger

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// DeadEntry is a ledger entry that the projector acknowledged without projecting or
// restocking it, because it never could (see MarkDead), with its event as far as it decodes
// (an `orders` entry of several orders: type `orders` and the item they share, see deadEvent).
type DeadEntry struct {
	Partition int    `json:"partition"`
	StreamID  string `json:"id"`
	Reason    string `json:"reason"`
	Type      string `json:"type,omitempty"`
	OrderID   string `json:"order_id,omitempty"`
	ItemID    string `json:"item_id,omitempty"`
	UserID    string `json:"user_id,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Quantity  int64  `json:"quantity,omitempty"`
	Malformed string `json:"malformed,omitempty"`
}

// MarkDead records e (an entry of partition e.Partition) as dead, with reason, and
// acknowledges it in group, in one MULTI: the entry leaves the pending list only once it is
// on record. Recording an entry again overwrites its reason.
func (l *Ledger) MarkDead(ctx context.Context, e Event, group, reason string) error {
	k := l.keys
	_, err := l.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, k.Dead(e.Partition), e.StreamID, reason)
		pipe.XAck(ctx, k.Events(e.Partition), group, e.StreamID)
		return nil
	})
	if err != nil {
		return redisErr("mark dead", err)
	}
	return nil
}

// Dead returns the dead entries of every partition (or only item's, when item is set), in
// partition and stream order, joined with their events.
func (l *Ledger) Dead(ctx context.Context, item string) ([]DeadEntry, error) {
	out := []DeadEntry{}
	for p := range l.keys.Partitions() {
		if item != "" && l.keys.Partition(item) != p {
			continue
		}
		reasons, err := l.rdb.HGetAll(ctx, l.keys.Dead(p)).Result()
		if err != nil {
			return nil, redisErr("read dead entries", err)
		}
		if len(reasons) == 0 {
			continue
		}
		ext := make([]redis.XPendingExt, 0, len(reasons))
		for id := range reasons {
			ext = append(ext, redis.XPendingExt{ID: id})
		}
		sortByStreamID(ext)
		events, err := l.entries(ctx, p, ext)
		if err != nil {
			return nil, err
		}
		for i, entry := range events {
			e, ok := deadEvent(entry, item)
			if !ok {
				continue
			}
			d := DeadEntry{Partition: p, StreamID: ext[i].ID, Reason: reasons[ext[i].ID], Type: string(e.Type),
				OrderID: e.OrderID, ItemID: e.ItemID, UserID: e.UserID, RequestID: e.RequestID, Quantity: e.Quantity}
			if e.Malformed != nil {
				d.Malformed = e.Malformed.Error()
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// deadEvent is the event a dead entry is listed with: its one event, or for an `orders` entry
// one of type `orders` naming the item its orders share (none when they differ). ok is false
// when item is set and no event of the entry names it.
func deadEvent(entry []Event, item string) (e Event, ok bool) {
	e = entry[0]
	if len(entry) > 1 {
		e = Event{Partition: e.Partition, StreamID: e.StreamID, Type: EventOrders, ItemID: e.ItemID}
	}
	for _, o := range entry {
		ok = ok || item == "" || o.ItemID == item
		if o.ItemID != e.ItemID {
			e.ItemID = ""
		}
	}
	return e, ok
}

// sortByStreamID sorts entries by stream ID (milliseconds, then sequence).
func sortByStreamID(ext []redis.XPendingExt) {
	key := func(id string) (ms, seq int64) {
		fmt.Sscanf(id, "%d-%d", &ms, &seq)
		return ms, seq
	}
	slices.SortFunc(ext, func(a, b redis.XPendingExt) int {
		am, as := key(a.ID)
		bm, bs := key(b.ID)
		return cmp.Or(cmp.Compare(am, bm), cmp.Compare(as, bs))
	})
}
