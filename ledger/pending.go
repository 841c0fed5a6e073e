package ledger

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// PendingFilter narrows a pending report. Zero values do not filter.
type PendingFilter struct {
	ItemID   string
	Consumer string
	MinIdle  time.Duration
	// Limit bounds the lines of Entries (one per event: an `orders` entry has one per order;
	// the summaries always count everything); 0 means 100.
	Limit int
	// Retain is the retention window the report's Retention is computed with; 0 means
	// DefaultRetain.
	Retain time.Duration
}

// PendingSummary is XPENDING's summary of one partition.
type PendingSummary struct {
	Partition int              `json:"partition"`
	Count     int64            `json:"count"`
	Oldest    string           `json:"oldest_id,omitempty"`
	Newest    string           `json:"newest_id,omitempty"`
	Consumers map[string]int64 `json:"consumers"`
}

// PendingEntry is one entry delivered to the group and not acknowledged, with its event; an
// `orders` entry is listed once per order, each line with the entry's StreamID.
type PendingEntry struct {
	Partition  int    `json:"partition"`
	StreamID   string `json:"id"`
	Consumer   string `json:"consumer"`
	IdleMS     int64  `json:"idle_ms"`
	Deliveries int64  `json:"deliveries"`
	Type       string `json:"type,omitempty"`
	OrderID    string `json:"order_id,omitempty"`
	ItemID     string `json:"item_id,omitempty"`
	UserID     string `json:"user_id,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
	Quantity   int64  `json:"quantity,omitempty"`
	// AgeMS is the time since the event was written (from its stream ID).
	AgeMS     int64  `json:"age_ms"`
	Malformed string `json:"malformed,omitempty"`
}

// PendingReport is what `flashsale pending` and GET /admin/pending show.
type PendingReport struct {
	Group      string           `json:"group"`
	Partitions []PendingSummary `json:"partitions"`
	Entries    []PendingEntry   `json:"entries"`
	// Dead lists the entries acknowledged without being projected or restocked (see
	// MarkDead): they are not pending any more, and will never be projected.
	Dead []DeadEntry `json:"dead"`
	// Truncated is set when more entries matched than Limit.
	Truncated bool `json:"truncated"`
	// Retention says per partition what the ledger retains and what holds its trimming
	// back (RetainState).
	Retention []RetainState `json:"retention"`
}

// Pending reports the entries that group has been delivered and not acknowledged: per
// partition the XPENDING summary, and the matching entries (XPENDING's extended form) joined
// with their events; then the dead entries (of the item, when the filter names one).
func (l *Ledger) Pending(ctx context.Context, group string, f PendingFilter) (PendingReport, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.ItemID != "" {
		if err := ValidateItemID(f.ItemID); err != nil {
			return PendingReport{}, err
		}
	}
	rep := PendingReport{Group: group, Partitions: []PendingSummary{}, Entries: []PendingEntry{}}
	now := time.Now()
	for p := range l.keys.Partitions() {
		stream := l.keys.Events(p)
		sum, err := l.rdb.XPending(ctx, stream, group).Result()
		if err != nil {
			if isNoGroup(err) {
				continue
			}
			return rep, redisErr("xpending", err)
		}
		rep.Partitions = append(rep.Partitions, PendingSummary{
			Partition: p, Count: sum.Count, Oldest: sum.Lower, Newest: sum.Higher, Consumers: nonNil(sum.Consumers),
		})
		if sum.Count == 0 || (f.ItemID != "" && l.keys.Partition(f.ItemID) != p) || rep.Truncated {
			continue
		}
		if err := l.pendingEntries(ctx, &rep, p, group, f, now); err != nil {
			return rep, err
		}
	}
	dead, err := l.Dead(ctx, f.ItemID)
	if err != nil {
		return rep, err
	}
	rep.Dead = dead
	if f.Retain <= 0 {
		f.Retain = DefaultRetain
	}
	for p := range l.keys.Partitions() {
		st, err := l.RetainState(ctx, p, f.Retain)
		if err != nil {
			return rep, err
		}
		rep.Retention = append(rep.Retention, st)
	}
	return rep, nil
}

// pendingEntries appends partition p's matching entries to rep, a page at a time.
func (l *Ledger) pendingEntries(ctx context.Context, rep *PendingReport, p int, group string, f PendingFilter, now time.Time) error {
	const page = 500
	start := "-"
	for {
		ext, err := l.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: l.keys.Events(p), Group: group, Idle: f.MinIdle,
			Start: start, End: "+", Count: page, Consumer: f.Consumer,
		}).Result()
		if err != nil {
			return redisErr("xpending", err)
		}
		if len(ext) == 0 {
			return nil
		}
		events, err := l.entries(ctx, p, ext)
		if err != nil {
			return err
		}
		for i, x := range ext {
			for _, e := range events[i] {
				if f.ItemID != "" && e.ItemID != f.ItemID {
					continue
				}
				if len(rep.Entries) == f.Limit {
					rep.Truncated = true
					return nil
				}
				rep.Entries = append(rep.Entries, pendingEntry(p, x, e, now))
			}
		}
		if len(ext) < page {
			return nil
		}
		start = "(" + ext[len(ext)-1].ID
	}
}

// pendingEntry is the line of event e of the pending entry x.
func pendingEntry(p int, x redis.XPendingExt, e Event, now time.Time) PendingEntry {
	pe := PendingEntry{
		Partition: p, StreamID: x.ID, Consumer: x.Consumer, IdleMS: x.Idle.Milliseconds(),
		Deliveries: x.RetryCount, Type: string(e.Type), OrderID: e.OrderID, ItemID: e.ItemID,
		UserID: e.UserID, RequestID: e.RequestID, Quantity: e.Quantity,
		AgeMS: max(now.Sub(time.UnixMilli(streamMS(x.ID))).Milliseconds(), 0),
	}
	if e.Malformed != nil {
		pe.Malformed = e.Malformed.Error()
	}
	return pe
}

// entries reads the events of the pending entries ext in one pipeline: for each entry, its
// events (one line each in the report: an `orders` entry has one per order).
func (l *Ledger) entries(ctx context.Context, p int, ext []redis.XPendingExt) ([][]Event, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(ext))
	for i, x := range ext {
		cmds[i] = pipe.XRangeN(ctx, l.keys.Events(p), x.ID, x.ID, 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, redisErr("read pending events", err)
	}
	events := make([][]Event, len(ext))
	for i, c := range cmds {
		msgs := c.Val()
		if len(msgs) == 0 {
			events[i] = []Event{{Partition: p, StreamID: ext[i].ID, Malformed: fmt.Errorf("%w: entry deleted", ErrMalformed)}}
			continue
		}
		events[i] = l.decodeOrMark(p, msgs[0])
	}
	return events, nil
}

// ConsumerState is one consumer of a group on one partition.
type ConsumerState struct {
	Name    string
	Pending int64
	// Idle is the time since the consumer last read (a blocked read counts).
	Idle time.Duration
}

// Consumers lists group's consumers on partition p.
func (l *Ledger) Consumers(ctx context.Context, p int, group string) ([]ConsumerState, error) {
	cs, err := l.rdb.XInfoConsumers(ctx, l.keys.Events(p), group).Result()
	if err != nil {
		if isNoGroup(err) {
			return nil, nil
		}
		return nil, redisErr("xinfo consumers", err)
	}
	out := make([]ConsumerState, len(cs))
	for i, c := range cs {
		out[i] = ConsumerState{Name: c.Name, Pending: c.Pending, Idle: c.Idle}
	}
	return out, nil
}

// isNoGroup reports whether err says the stream or the group does not exist yet.
func isNoGroup(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "NOGROUP") || strings.Contains(s, "no such key")
}

func nonNil(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

// streamMS returns the millisecond part of a stream ID.
func streamMS(id string) int64 {
	var ms int64
	fmt.Sscanf(id, "%d-", &ms)
	return ms
}
