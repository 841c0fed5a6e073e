package ledger

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Items lists the IDs of every item that has been given stock, sorted: the union of the
// partitions' item sets (one SMEMBERS per partition key, so it works on Redis Cluster too).
func (l *Ledger) Items(ctx context.Context) ([]string, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, l.keys.Partitions())
	for p := range cmds {
		cmds[p] = pipe.SMembers(ctx, l.keys.Items(p))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, redisErr("list items", err)
	}
	var items []string
	for _, c := range cmds {
		items = append(items, c.Val()...)
	}
	slices.Sort(items)
	return items, nil
}

// Tally is the running fold of one item's ledger events, in stream order, by the rules
// `flashsale audit` folds by (projector.Audit): a stock event makes the stock the counter it
// recorded (a set, the set value) and the units put on sale that plus the units sold so far;
// orders, restocks and released reservations move units between stock and sold.
type Tally struct {
	PutOnSale int64
	Sold      int64
	Restocked int64
	// Stock is what the events add up to (the Redis counter holds the same when nothing is
	// being written).
	Stock  int64
	Orders int64
	// SoldOutAt is the time of the order that took the stock to zero, while it is zero.
	SoldOutAt time.Time
}

// TallyFrom returns the tally of an item as checkpoint c holds it: the start of a fold of
// the entries retained after c.ID.
func TallyFrom(c CheckpointItem) Tally {
	return Tally{PutOnSale: c.PutOnSale, Sold: c.Sold + c.Reserved, Restocked: c.Restocked + c.Released, Stock: c.Stock, Orders: c.Orders}
}

// Apply folds e, an event of the tally's item, into t.
func (t *Tally) Apply(e Event) {
	if e.Malformed != nil {
		return
	}
	switch e.Type {
	case EventStock:
		// The event records the counter after it (set: the set value), as audit folds: an
		// add that corrects a counter changed by hand makes the tally agree again.
		t.Stock = e.Stock
		if e.Op == StockSet {
			t.Stock = e.Quantity
		}
		t.PutOnSale = t.Stock + t.Sold
	case EventOrder, EventWon, EventPromoted:
		if e.Type == EventOrder && e.Draw {
			break // a draw entry takes no stock until it wins
		}
		t.Stock -= e.Quantity
		t.Sold += e.Quantity
		t.Orders++
		if t.Stock <= 0 && t.SoldOutAt.IsZero() {
			t.SoldOutAt = e.Time
		}
	case EventRestock, EventCancelled, EventExpired:
		t.Stock += e.Quantity
		t.Sold -= e.Quantity
		t.Restocked += e.Quantity
	}
	if t.Stock > 0 {
		t.SoldOutAt = time.Time{}
	}
}

// Backlog is the projector group's state on one partition: what `flashsale pending` and the
// flashsale_projector_lag and _pending metrics report.
type Backlog struct {
	Partition int
	GroupState
	// Oldest is the stream ID of the oldest pending entry ("" when none); OldestAge is the
	// time since it was written.
	Oldest    string
	OldestAge time.Duration
	Consumers []ConsumerState
}

// Backlog returns group's backlog on partition p: GroupInfo, the XPENDING summary and the
// group's consumers.
func (l *Ledger) Backlog(ctx context.Context, p int, group string) (Backlog, error) {
	b := Backlog{Partition: p}
	g, err := l.GroupInfo(ctx, p, group)
	if err != nil || !g.Exists {
		return b, err
	}
	b.GroupState = g
	if g.Pending > 0 {
		sum, err := l.rdb.XPending(ctx, l.keys.Events(p), group).Result()
		if err != nil && !isNoGroup(err) {
			return b, redisErr("xpending", err)
		}
		if sum != nil && sum.Lower != "" {
			b.Oldest = sum.Lower
			b.OldestAge = max(time.Since(time.UnixMilli(streamMS(sum.Lower))), 0)
		}
	}
	if b.Consumers, err = l.Consumers(ctx, p, group); err != nil {
		return b, err
	}
	slices.SortFunc(b.Consumers, func(a, c ConsumerState) int { return strings.Compare(a.Name, c.Name) })
	return b, nil
}
