package ledger

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var snapshotScript = redis.NewScript(lua.Snapshot)

// Snapshot is one partition of the ledger at one instant (one script call): the stream's last
// entry, the consumer group's position and the stock counters of some items. The counters are
// exactly what the partition's events fold to up to LastID, so a reader that folds the stream
// up to LastID (RangeTo) can compare them although purchases go on.
type Snapshot struct {
	Partition int
	// LastID is the stream ID of the partition's last entry; "" when it has none.
	LastID string
	// GroupExists is false when the group (or the stream) has not been created yet.
	GroupExists bool
	// Pending counts entries the group had delivered and not acknowledged.
	Pending int64
	// LastDelivered is the ID of the last entry delivered to the group; entries after it, up
	// to LastID, were not delivered yet.
	LastDelivered string
	// Stock holds the counter of each item asked for that has one.
	Stock map[string]int64
}

// Snapshot reads partition p at one instant: its last stream ID, group's position on it, and
// the stock counters of items (each must belong to p). Errors: ErrInvalid, ErrUnavailable.
func (l *Ledger) Snapshot(ctx context.Context, p int, group string, items []string) (Snapshot, error) {
	k := l.keys
	if p < 0 || p >= k.Partitions() {
		return Snapshot{}, invalid("partition %d: want 0..%d", p, k.Partitions()-1)
	}
	keys := make([]string, 0, 1+len(items))
	keys = append(keys, k.Events(p))
	for _, item := range items {
		if err := ValidateItemID(item); err != nil {
			return Snapshot{}, err
		}
		if k.Partition(item) != p {
			return Snapshot{}, invalid("item %q does not belong to partition %d", item, p)
		}
		keys = append(keys, k.Stock(item))
	}
	v, err := snapshotScript.Run(ctx, l.rdb, keys, group).Result()
	if err != nil {
		return Snapshot{}, redisErr("snapshot", err)
	}
	a, code, err := scriptReply(v, 5+len(items))
	if err != nil {
		return Snapshot{}, err
	}
	if code != 0 {
		return Snapshot{}, fmt.Errorf("snapshot script: unknown code %d", code)
	}
	s := Snapshot{Partition: p, Stock: make(map[string]int64, len(items))}
	s.LastID, _ = a[1].(string)
	exists, _ := a[2].(int64)
	s.GroupExists = exists == 1
	s.Pending, _ = a[3].(int64)
	s.LastDelivered, _ = a[4].(string)
	for i, item := range items {
		raw, _ := a[5+i].(string)
		if raw == "" {
			continue
		}
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return Snapshot{}, fmt.Errorf("snapshot: stock of %s is %q: %w", item, raw, ErrMalformed)
		}
		s.Stock[item] = n
	}
	return s, nil
}

// RangeTo is Range bounded by last: the events of the entries after the exclusive start after
// ("" for the beginning) up to and including the stream ID last ("+" for the end), of at most
// count entries.
func (l *Ledger) RangeTo(ctx context.Context, p int, after, last string, count int64) ([]Event, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	msgs, err := l.rdb.XRangeN(ctx, l.keys.Events(p), start, last, count).Result()
	if err != nil {
		return nil, redisErr("read ledger", err)
	}
	events := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		events = append(events, l.decodeOrMark(p, m)...)
	}
	return events, nil
}

// CompareIDs compares two stream IDs ("ms-seq") numerically, as Redis orders them: -1 when a
// is before b, 0 when equal, +1 when after. "" (no entry) comes before every ID; an ID that
// does not parse counts as "".
func CompareIDs(a, b string) int {
	pa, aok := parsePos(a)
	pb, bok := parsePos(b)
	if aok != bok {
		if aok {
			return 1
		}
		return -1
	}
	return pa.compare(pb)
}
