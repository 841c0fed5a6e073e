package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var leaseScript = redis.NewScript(lua.Lease)

// EntriesAfter returns up to count entries of partition p's stream after the stream ID after
// ("0-0": from the first), as Redis holds them, undecoded. When there are none it waits up to
// block for the first (0: it does not wait). With MinReplicas the entries are returned only
// once the partition's master has confirmed them to its replicas, as ReadGroup does.
func (l *Ledger) EntriesAfter(ctx context.Context, p int, after string, count int64, block time.Duration) ([]redis.XMessage, error) {
	key := l.keys.Events(p)
	msgs, err := l.rdb.XRangeN(ctx, key, "("+after, "+", count).Result()
	if err != nil {
		return nil, redisErr("range", err)
	}
	if len(msgs) == 0 && block > 0 {
		res, err := l.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, after}, Count: count, Block: block}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, redisErr("read", err)
		}
		for _, s := range res {
			msgs = append(msgs, s.Messages...)
		}
	}
	if len(msgs) > 0 {
		if err := l.confirm(ctx, p); err != nil {
			return nil, err
		}
	}
	return msgs, nil
}

// AckThrough makes group's acknowledgements on partition p cover every entry up to and
// including the stream ID through: it acknowledges the group's pending entries up to it (of
// any consumer; up to count per XACK), then moves the group's last delivered ID forward to
// through (advance.lua: XGROUP SETID, never back, no further than the stream's last entry),
// delivering nothing: the entries are not read again, no consumer holds them, and nothing per
// entry is written to the AOF. Afterwards no entry up to through is pending and the group's
// last delivered ID is at least through (when the stream reaches it).
func (l *Ledger) AckThrough(ctx context.Context, p int, group, through string, count int64) error {
	key := l.keys.Events(p)
	count = max(count, 100)
	for {
		pend, err := l.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: key, Group: group, Start: "-", End: through, Count: count,
		}).Result()
		if err != nil {
			return redisErr("pending up to "+through, err)
		}
		ids := make([]string, len(pend))
		for i, e := range pend {
			ids[i] = e.ID
		}
		if err := l.Ack(ctx, p, group, ids...); err != nil {
			return err
		}
		if int64(len(pend)) < count {
			break
		}
	}
	v, err := advanceScript.Run(ctx, l.rdb, []string{key}, group, through, advanceCount).Result()
	if err != nil {
		return redisErr("advance group", err)
	}
	if _, code, err := scriptReply(v, 2); err != nil {
		return err
	} else if code == 2 {
		return fmt.Errorf("ack through %s: partition %d has no group %q", through, p, group)
	}
	return nil
}

// advanceCount bounds the entries after the new position that advance.lua counts to keep the
// group's lag exact: right after a segment is written only the few entries added meanwhile
// follow it.
const advanceCount = 1000

var advanceScript = redis.NewScript(lua.Advance)

// HoldLease takes or renews partition p's lease called name for holder, for ttl; it reports
// whether holder has it now (false: another holder has it).
func (l *Ledger) HoldLease(ctx context.Context, p int, name, holder string, ttl time.Duration) (bool, error) {
	ms := max(ttl.Milliseconds(), 1)
	n, err := leaseScript.Run(ctx, l.rdb, []string{l.keys.Lease(p, name)}, holder, ms).Int()
	if err != nil {
		return false, redisErr("hold lease", err)
	}
	return n == 1, nil
}

// ReleaseLease gives up partition p's lease called name if holder has it.
func (l *Ledger) ReleaseLease(ctx context.Context, p int, name, holder string) error {
	if err := leaseScript.Run(ctx, l.rdb, []string{l.keys.Lease(p, name)}, holder, 0).Err(); err != nil {
		return redisErr("release lease", err)
	}
	return nil
}

// ID returns the ledger's identity: a random name given on first use and kept in Redis, so
// that an archive can tell its own ledger from another (or from a new one after Redis lost
// everything).
func (l *Ledger) ID(ctx context.Context) (string, error) {
	var b [12]byte
	rand.Read(b[:])
	key := l.keys.ID()
	if err := l.rdb.SetNX(ctx, key, hex.EncodeToString(b[:]), 0).Err(); err != nil {
		return "", redisErr("ledger id", err)
	}
	id, err := l.rdb.Get(ctx, key).Result()
	if err != nil {
		return "", redisErr("ledger id", err)
	}
	return id, nil
}

// StoredID returns the ledger's identity without creating it: "" when none was set yet.
func (l *Ledger) StoredID(ctx context.Context) (string, error) {
	id, err := l.rdb.Get(ctx, l.keys.ID()).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", redisErr("ledger id", err)
	}
	return id, nil
}

// DecodeEntry decodes an entry of partition p into its events as Range does: one that does not
// decode, or names an item of another partition, comes back as one event with Malformed set.
func (l *Ledger) DecodeEntry(p int, id string, fields map[string]string) []Event {
	values := make(map[string]any, len(fields))
	for k, v := range fields {
		values[k] = v
	}
	return l.decodeOrMark(p, redis.XMessage{ID: id, Values: values})
}

// TrimmedPast reports whether partition p's stream lost entries after the stream ID after:
// entries were deleted from it (XTRIM, XDEL) and its first entry is after `after` (or it is
// empty while Redis generated IDs after `after`). It then returns the first ID the stream
// still holds (or its last generated one), else "". Trimming with MINID at an ID that is kept
// (an archived one) never leaves a gap: the entry at MINID stays. Redis before 7.0, which does
// not count the entries added, reports nothing.
func (l *Ledger) TrimmedPast(ctx context.Context, p int, after string) (string, error) {
	info, err := l.rdb.XInfoStream(ctx, l.keys.Events(p)).Result()
	if err != nil {
		if isNoGroup(err) {
			return "", nil // no stream: nothing written, nothing deleted
		}
		return "", redisErr("stream info", err)
	}
	if info.EntriesAdded <= info.Length {
		return "", nil
	}
	first := info.FirstEntry.ID
	if info.Length == 0 {
		first = info.LastGeneratedID
	}
	if CompareIDs(first, after) <= 0 {
		return "", nil
	}
	return first, nil
}
