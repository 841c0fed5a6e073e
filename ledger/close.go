package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var closeScript = redis.NewScript(lua.Close)

// CloseItem closes item's sale for good and records it by a stock event with op close: from then
// on purchases are ErrItemClosed (HTTP 410) and stock changes ErrItemClosed too; the item is
// still listed and answered, with Closed set. Closing a closed item changes nothing. It
// returns the close event's stream ID. Errors: ErrInvalid, ErrUnknownItem, ErrUnavailable.
func (l *Ledger) CloseItem(ctx context.Context, item string) (string, error) {
	if err := ValidateItemID(item); err != nil {
		return "", err
	}
	k := l.keys
	p := k.Partition(item)
	v, err := closeScript.Run(ctx, l.rdb, []string{k.Stock(item), k.Rules(item), k.Events(p)}, item).Result()
	if err != nil {
		return "", redisErr("close item", err)
	}
	a, code, err := scriptReply(v, 3)
	if err != nil {
		return "", err
	}
	id, _ := a[2].(string)
	switch code {
	case 0:
		return id, nil
	case 1:
		return "", ErrUnknownItem
	case 2:
		return id, nil
	}
	return "", fmt.Errorf("close script: unknown code %d", code)
}

// ClosedItem is a closed item's state as Cleanup sees it.
type ClosedItem struct {
	ItemID string
	// CloseID is the stream ID of the event that closed it.
	CloseID string
	// Cleaned is set once Cleanup deleted its per-order keys.
	Cleaned bool
}

// Cleanup deletes the per-order keys of the closed item: its per-user counts and request
// hashes, restock markers and order state hashes, and a draw item's entries, waitlist and held
// set (its draw state hash, one per item, stays: it records that the draw is done, so that the
// draw is never run again). It does so only once the item's sale is settled: no order of it is
// still reserved, no draw entry still registered or waitlisted nor the item among the drawn
// items whose waitlist may still move (Keys.Draws), and projectedThrough (the stream ID through
// which the projector has acknowledged everything, see RetainState) is at or past the close
// event, so that no restock of its orders can come after the cleanup. It returns false,
// nothing deleted, when the sale is not settled yet; a cleaned item is marked (rules field
// cleaned) and not cleaned again. The keys are found with SCAN (on each master of a
// cluster): a cleanup costs a pass over the keys in Redis, once per closed item.
// Errors: ErrInvalid, ErrUnknownItem, ErrUnavailable.
func (l *Ledger) Cleanup(ctx context.Context, item, projectedThrough string) (bool, error) {
	if err := ValidateItemID(item); err != nil {
		return false, err
	}
	k := l.keys
	st, err := l.closedItem(ctx, item)
	if err != nil {
		return false, err
	}
	if st.CloseID == "" {
		return false, invalid("item %q is not closed", item)
	}
	if st.Cleaned {
		return true, nil
	}
	if CompareIDs(projectedThrough, st.CloseID) < 0 {
		return false, nil
	}
	p := k.Partition(item)
	tag := k.tag(p)
	if drawing, err := l.rdb.SIsMember(ctx, k.Draws(p), item).Result(); err != nil {
		return false, redisErr("read drawn items", err)
	} else if drawing {
		return false, nil
	}
	// Order state hashes name their item in a field: read them all, delete only settled ones
	// of this item, and give up (to come back later) while one is still reserved, or a draw
	// entry still waits for its outcome.
	var orders []string
	err = l.scan(ctx, tag+"order:*", func(keys []string) error {
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(keys))
		for i, key := range keys {
			cmds[i] = pipe.HMGet(ctx, key, "item_id", "state")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return redisErr("read order states", err)
		}
		for i, c := range cmds {
			v := c.Val()
			if s, _ := v[0].(string); s != item {
				continue
			}
			switch s, _ := v[1].(string); s {
			case StateReserved, StateRegistered, StateWaitlisted:
				return errNotSettled
			}
			orders = append(orders, keys[i])
		}
		return nil
	})
	if errors.Is(err, errNotSettled) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := l.del(ctx, append(orders, k.DrawEntries(item), k.Waitlist(item), k.Held(item),
		k.Users(item), k.Requests(item), k.RequestsOld(item))); err != nil {
		return false, err
	}
	// Item IDs hold no ':' and no glob character, so the pattern matches this item's keys only.
	if err := l.scan(ctx, tag+"restocked:"+item+":*", func(keys []string) error { return l.del(ctx, keys) }); err != nil {
		return false, err
	}
	if err := l.rdb.HSet(ctx, k.Rules(item), "cleaned", "1").Err(); err != nil {
		return false, redisErr("mark item cleaned", err)
	}
	return true, nil
}

var errNotSettled = errors.New("reservations open")

// closedItem reads item's close state from its rules.
func (l *Ledger) closedItem(ctx context.Context, item string) (ClosedItem, error) {
	v, err := l.rdb.HMGet(ctx, l.keys.Rules(item), "closed", "closed_id", "cleaned").Result()
	if err != nil {
		return ClosedItem{}, redisErr("read item rules", err)
	}
	st := ClosedItem{ItemID: item}
	if s, _ := v[0].(string); s == "1" {
		st.CloseID, _ = v[1].(string)
	}
	st.Cleaned = intField(v[2]) == 1
	return st, nil
}

// ItemRules is what the retention loop reads of each item: its sale window's end and whether
// (and when) it was closed and cleaned.
type ItemRules struct {
	ClosedItem
	// EndMS is the sale window's end (unix ms; 0 = open).
	EndMS int64
}

// PartitionRules returns the rules of every item of partition p (its items set), in one
// pipelined round trip after SMEMBERS.
func (l *Ledger) PartitionRules(ctx context.Context, p int) ([]ItemRules, error) {
	items, err := l.rdb.SMembers(ctx, l.keys.Items(p)).Result()
	if err != nil {
		return nil, redisErr("list items", err)
	}
	if len(items) == 0 {
		return nil, nil
	}
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(items))
	for i, item := range items {
		cmds[i] = pipe.HMGet(ctx, l.keys.Rules(item), "closed", "closed_id", "cleaned", "end_ms")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, redisErr("read item rules", err)
	}
	out := make([]ItemRules, len(items))
	for i, c := range cmds {
		v := c.Val()
		r := ItemRules{ClosedItem: ClosedItem{ItemID: items[i]}, EndMS: intField(v[3])}
		if s, _ := v[0].(string); s == "1" {
			r.CloseID, _ = v[1].(string)
		}
		r.Cleaned = intField(v[2]) == 1
		out[i] = r
	}
	return out, nil
}

// scan calls fn with each page of keys matching pattern, on every master of a cluster.
func (l *Ledger) scan(ctx context.Context, pattern string, fn func([]string) error) error {
	each := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return redisErr("scan", err)
			}
			if len(keys) > 0 {
				if err := fn(keys); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := l.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return each(ctx, c) })
	}
	return each(ctx, l.rdb)
}

// del deletes keys (all of one partition, so of one slot), in pages.
func (l *Ledger) del(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := l.rdb.Unlink(ctx, keys[:n]...).Err(); err != nil {
			return redisErr("delete keys", err)
		}
		keys = keys[n:]
	}
	return nil
}
