package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var restockScript = redis.NewScript(lua.Restock)

// EnsureGroup creates consumer group on partition p's stream, from its first entry, creating
// the stream if needed. An existing group is left as it is.
func (l *Ledger) EnsureGroup(ctx context.Context, p int, group string) error {
	err := l.rdb.XGroupCreateMkStream(ctx, l.keys.Events(p), group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return redisErr("create group", err)
	}
	return nil
}

// ReadGroup reads up to count entries of partition p for consumer in group: id ">" for new
// entries (waiting up to block), "0" for the consumer's own pending ones, and returns their
// events (several for an `orders` entry, see Range). Entries that do not decode come back as
// one event with Malformed set.
func (l *Ledger) ReadGroup(ctx context.Context, p int, group, consumer, id string, count int64, block time.Duration) ([]Event, error) {
	if id != ">" {
		block = -1 // pending entries are there or not; never wait for them
	}
	res, err := l.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    group,
		Consumer: consumer,
		Streams:  []string{l.keys.Events(p), id},
		Count:    count,
		Block:    block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, redisErr("read group", err)
	}
	var events []Event
	for _, s := range res {
		for _, m := range s.Messages {
			events = append(events, l.decodeOrMark(p, m)...)
		}
	}
	if len(events) > 0 {
		if err := l.confirm(ctx, p); err != nil {
			return nil, err // the entries stay pending on consumer; read them again with ID 0
		}
	}
	return events, nil
}

// Ack acknowledges entries of partition p in group.
func (l *Ledger) Ack(ctx context.Context, p int, group string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := l.rdb.XAck(ctx, l.keys.Events(p), group, ids...).Err(); err != nil {
		return redisErr("ack", err)
	}
	return nil
}

// AutoClaim moves to consumer up to count entries of partition p that have been pending in
// group for at least minIdle, scanning from start ("0-0" first); it returns them and the start
// of the next scan ("0-0" when the scan is complete). It returns the entries' events as
// ReadGroup does.
func (l *Ledger) AutoClaim(ctx context.Context, p int, group, consumer string, minIdle time.Duration, start string, count int64) ([]Event, string, error) {
	msgs, next, err := l.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream:   l.keys.Events(p),
		Group:    group,
		Consumer: consumer,
		MinIdle:  minIdle,
		Start:    start,
		Count:    count,
	}).Result()
	if err != nil {
		return nil, "", redisErr("autoclaim", err)
	}
	events := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		events = append(events, l.decodeOrMark(p, m)...)
	}
	if len(events) > 0 {
		if err := l.confirm(ctx, p); err != nil {
			return nil, "", err
		}
	}
	return events, next, nil
}

// Touch resets the idle time of consumer's pending entries ids, so that other consumers' claim
// loops do not take over entries that are still being worked on.
func (l *Ledger) Touch(ctx context.Context, p int, group, consumer string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	err := l.rdb.XClaimJustID(ctx, &redis.XClaimArgs{
		Stream: l.keys.Events(p), Group: group, Consumer: consumer, Messages: ids,
	}).Err()
	if err != nil {
		return redisErr("touch pending", err)
	}
	return nil
}

// Restock cancels order (an order event read from the stream): it gives the units back,
// releases the user's per-user count and appends a restock event with reason, all in one
// script call and at most once per order. It does not acknowledge the order's entry: an
// `orders` entry holds other orders, which are settled only once the caller has handled them
// all, and then acknowledges the entry (a restock done again before that is a no-op). It
// reports whether this call did the restock (false: it had been done before). ErrInvalid
// means that the entry can never be restocked (not an order, no quantity, or an item that is
// not of its partition): a permanent failure, not worth a retry.
func (l *Ledger) Restock(ctx context.Context, order Event, reason string) (bool, error) {
	if order.Type != EventOrder || order.ItemID == "" || order.Quantity < 1 || order.Quantity > MaxStock {
		return false, fmt.Errorf("restock %s/%s: %w: not a restockable order", order.OrderID, order.StreamID, ErrInvalid)
	}
	k := l.keys
	if ValidateItemID(order.ItemID) != nil || k.Partition(order.ItemID) != order.Partition {
		return false, fmt.Errorf("restock %s: %w: item_id %q does not belong to partition %d", order.OrderID, ErrInvalid, order.ItemID, order.Partition)
	}
	keys := []string{
		k.Stock(order.ItemID),
		k.Users(order.ItemID),
		k.Events(order.Partition),
		k.Restocked(order.ItemID, order.OrderID),
		k.Order(order.Partition, order.OrderID),
		k.Due(order.Partition),
		k.Rules(order.ItemID),
	}
	v, err := restockScript.Run(ctx, l.rdb, keys,
		order.OrderID, order.StreamID, order.ItemID, order.UserID, order.RequestID,
		order.Quantity, reason, order.Time.UnixMilli(), l.leaseMS).Result()
	if err != nil {
		return false, redisErr("restock", err)
	}
	_, code, err := scriptReply(v, 2)
	if err != nil {
		return false, err
	}
	switch code {
	case 0:
		return true, nil
	case 1:
		return false, nil
	}
	return false, fmt.Errorf("restock script: unknown code %d", code)
}

// GroupState is a consumer group's position on one partition stream.
type GroupState struct {
	// Exists is false when the stream or the group has not been created yet.
	Exists bool
	// Pending counts entries delivered and not yet acknowledged.
	Pending int64
	// Lag counts entries not yet delivered to the group.
	Lag int64
}

// lagCountCap bounds the entries read to count a lag that Redis does not report.
const lagCountCap = 100_000

// GroupInfo returns group's state on partition p; a missing stream or group has none.
func (l *Ledger) GroupInfo(ctx context.Context, p int, group string) (GroupState, error) {
	groups, err := l.rdb.XInfoGroups(ctx, l.keys.Events(p)).Result()
	if err != nil {
		if isNoGroup(err) {
			return GroupState{}, nil
		}
		return GroupState{}, redisErr("group info", err)
	}
	for _, g := range groups {
		if g.Name != group {
			continue
		}
		st := GroupState{Exists: true, Pending: g.Pending, Lag: g.Lag}
		if st.Lag != 0 {
			// Redis's lag is a counter it cannot always keep right (it gives up after entries
			// are deleted, and can come back wrong from an AOF reload): when the group has been
			// delivered the stream's last entry, nothing is undelivered, whatever it says.
			info, err := l.rdb.XInfoStream(ctx, l.keys.Events(p)).Result()
			if err != nil {
				return GroupState{}, redisErr("stream info", err)
			}
			if info.LastGeneratedID == g.LastDeliveredID {
				st.Lag = 0
			}
		}
		if st.Lag < 0 {
			// Unknown: count the entries after the group's last delivered one (capped).
			n, err := l.rdb.XRangeN(ctx, l.keys.Events(p), "("+g.LastDeliveredID, "+", lagCountCap).Result()
			if err != nil {
				return GroupState{}, redisErr("count lag", err)
			}
			st.Lag = int64(len(n))
		}
		return st, nil
	}
	return GroupState{}, nil
}

// Length returns the number of entries of partition p's stream.
func (l *Ledger) Length(ctx context.Context, p int) (int64, error) {
	n, err := l.rdb.XLen(ctx, l.keys.Events(p)).Result()
	if err != nil {
		return 0, redisErr("xlen", err)
	}
	return n, nil
}

// GroupStat is a cheap view of a consumer group on one partition, for metrics: reading it
// costs a few O(1) or O(log n) commands per partition, whatever the backlog.
type GroupStat struct {
	Partition int
	// Exists is false when the stream or the group has not been created yet.
	Exists bool
	// Pending counts entries delivered and not yet acknowledged.
	Pending int64
	// Lag counts entries not yet delivered, as Redis reports it; -1 when Redis cannot tell
	// (after XDEL, XGROUP SETID or an AOF reload with the group behind). Counting them would
	// read the whole backlog, which GroupStats never does.
	Lag int64
	// Oldest is the time of the first entry not yet delivered (from its stream ID); zero
	// when everything has been delivered.
	Oldest time.Time
}

// GroupStats returns group's stats on every partition in two pipelined round trips: XINFO
// GROUPS per partition, then, for partitions with a lag, the first undelivered entry
// (XRANGE COUNT 1). No partition's result is left out: a failed read fails the call.
func (l *Ledger) GroupStats(ctx context.Context, group string) ([]GroupStat, error) {
	parts := l.keys.Partitions()
	pipe := l.rdb.Pipeline()
	infos := make([]*redis.XInfoGroupsCmd, parts)
	for p := range parts {
		infos[p] = pipe.XInfoGroups(ctx, l.keys.Events(p))
	}
	pipe.Exec(ctx) // errors are read per command below
	stats := make([]GroupStat, parts)
	last := make([]string, parts)
	for p, c := range infos {
		stats[p].Partition = p
		groups, err := c.Result()
		if err != nil {
			if isNoGroup(err) {
				continue
			}
			return nil, redisErr("group info", err)
		}
		for _, g := range groups {
			if g.Name == group {
				stats[p] = GroupStat{Partition: p, Exists: true, Pending: g.Pending, Lag: g.Lag}
				last[p] = g.LastDeliveredID
			}
		}
	}
	pipe = l.rdb.Pipeline()
	next := make([]*redis.XMessageSliceCmd, parts)
	for p, st := range stats {
		if st.Exists && st.Lag != 0 {
			next[p] = pipe.XRangeN(ctx, l.keys.Events(p), "("+last[p], "+", 1)
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, redisErr("first undelivered entry", err)
		}
	}
	for p, c := range next {
		if c == nil {
			continue
		}
		if msgs := c.Val(); len(msgs) > 0 {
			stats[p].Oldest = time.UnixMilli(streamMS(msgs[0].ID))
		} else {
			// Delivered up to the last entry: nothing is undelivered, whatever Redis's
			// counter says (it can come back wrong from an AOF reload).
			stats[p].Lag = 0
		}
	}
	return stats, nil
}

// streamPos is a stream ID; the zero value is "before every entry" (Redis never writes 0-0).
type streamPos struct{ ms, seq uint64 }

// parsePos parses a stream ID "ms-seq"; false (and the zero position) when it does not parse.
func parsePos(id string) (streamPos, bool) {
	m, q, found := strings.Cut(id, "-")
	if !found {
		return streamPos{}, false
	}
	ms, err1 := strconv.ParseUint(m, 10, 64)
	seq, err2 := strconv.ParseUint(q, 10, 64)
	if err1 != nil || err2 != nil {
		return streamPos{}, false
	}
	return streamPos{ms, seq}, true
}

// compare orders positions as Redis orders stream IDs: -1, 0 or +1.
func (a streamPos) compare(b streamPos) int {
	if c := cmp.Compare(a.ms, b.ms); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

func (a streamPos) less(b streamPos) bool { return a.compare(b) < 0 }

func (a streamPos) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}
