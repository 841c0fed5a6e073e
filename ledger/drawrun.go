package ledger

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var drawBatchScript = redis.NewScript(lua.DrawBatch)

// The draw's default batch sizes (DrawOptions), measured with BenchmarkDraw and Redis's slow
// log (docs/PERFORMANCE.md, "Draws"): a call of DefaultDrawBatch waitlisted entries, or of
// DefaultWinnerBatch winners, holds Redis for a few milliseconds.
const (
	DefaultDrawBatch   = 2000
	DefaultWinnerBatch = 200
)

// entryScanCount is the COUNT of each HSCAN of a draw's entries hash: about as many fields
// per call, well under a millisecond of Redis each.
const entryScanCount = 1000

// DrawOptions tune RunDraw.
type DrawOptions struct {
	// Batch is the most entries written by one script call (default DefaultDrawBatch), and
	// WinnerBatch the most winners among them (default DefaultWinnerBatch): a winner costs
	// Redis several writes, a waitlisted entry one sorted-set member. Both bound how long
	// Redis is held by each call.
	Batch, WinnerBatch int
}

// DrawResult reports a draw.
type DrawResult struct {
	Entries int
	Winners int
	// Units is the stock drawn; WonUnits what the winners took; the rest is left over.
	Units, WonUnits int64
	// Batches is the number of script calls this process made that wrote a batch; Longest the
	// longest of them, round trip included (an upper bound of how long Redis was held).
	Batches int
	Longest time.Duration
	// Resumed is the position this process started writing at (> 0 after a crash, or when
	// another process was drawing too).
	Resumed int
}

// drawPlan is a draw's result as every process computes it: the entries' orders in rank
// order, the first len(winners) of which win, given in full.
type drawPlan struct {
	orders  []string
	winners []Entry
}

// RunDraw draws item with seed, once: the seed must match the item's commitment and the draw
// time must have come by Redis's clock. The entries are read from the item's entries hash
// (written by draw_enter.lua with each entry's order event) and ranked here; the result is
// written in batches by draw_batch.lua, each at the position the draw has reached, so that
// any number of processes may run it at once, and a run killed half way is finished by the
// next one without writing any entry twice. Running it after the draw is done returns the
// result without writing anything. Errors: ErrUnknownItem, ErrNotDraw, ErrSeedMismatch,
// ErrDrawNotDue, ErrUnavailable.
func (l *Ledger) RunDraw(ctx context.Context, item string, seed []byte, opt DrawOptions) (DrawResult, error) {
	if opt.Batch <= 0 {
		opt.Batch = DefaultDrawBatch
	}
	if opt.WinnerBatch <= 0 {
		opt.WinnerBatch = DefaultWinnerBatch
	}
	it, err := l.dueDraw(ctx, item, seed)
	if err != nil {
		return DrawResult{}, err
	}
	st, err := l.rdb.HMGet(ctx, l.keys.DrawState(item), "cursor", "units").Result()
	if err != nil {
		return DrawResult{}, redisErr("read draw state", err)
	}
	units := it.Stock
	if s, ok := st[1].(string); ok {
		units, _ = strconv.ParseInt(s, 10, 64)
	}
	plan, err := l.planDraw(ctx, item, seed, units)
	if err != nil {
		return DrawResult{}, err
	}
	res := DrawResult{Entries: len(plan.orders), Winners: len(plan.winners), Units: units}
	for _, e := range plan.winners {
		res.WonUnits += e.Quantity
	}
	res.Resumed = int(intField(st[0]))
	err = l.writeDraw(ctx, item, it.DrawCommit, hex.EncodeToString(seed), plan, res.Resumed, units, opt, &res)
	return res, err
}

// writeDraw writes plan from cursor on, one draw_batch.lua call per batch, until the draw is
// done; a batch another process wrote first moves the cursor to where that process got.
func (l *Ledger) writeDraw(ctx context.Context, item, commit, seedHex string, plan drawPlan, cursor int, units int64, opt DrawOptions, res *DrawResult) error {
	k := l.keys
	p := k.Partition(item)
	keys := []string{k.DrawState(item), k.Rules(item), k.Stock(item), k.Events(p), k.Due(p), k.Waitlist(item), k.Held(item), k.Draws(p)}
	n, won := len(plan.orders), len(plan.winners)
	for {
		end := min(cursor+opt.Batch, n)
		if won-cursor > opt.WinnerBatch {
			end = min(end, cursor+opt.WinnerBatch)
		}
		last := "0"
		if end == n {
			last = "1"
		}
		w := max(0, min(end, won)-cursor)
		args := append(make([]any, 0, 10+6*w+(end-cursor-w)),
			item, cursor, units, commit, seedHex, k.OrderPrefix(p), k.Users(item), last, w, cursor+w)
		args = appendDrawBatch(args, plan, cursor, cursor+w, end)
		start := time.Now()
		v, err := drawBatchScript.Run(ctx, l.rdb, keys, args...).Result()
		took := time.Since(start)
		if err != nil {
			return redisErr("write draw batch", err)
		}
		a, code, err := scriptReply(v, 2)
		if err != nil {
			return err
		}
		next, _ := a[1].(int64)
		switch code {
		case 0:
			res.Batches++
			res.Longest = max(res.Longest, took)
			if cursor = int(next); cursor >= n {
				return nil
			}
		case 1:
			return nil
		case 2:
			if int(next) > n {
				return fmt.Errorf("draw of %s is at %d of %d entries: the entries read here are missing some", item, next, n)
			}
			cursor = int(next)
		case 3:
			return ErrDrawNotDue
		case 4:
			return fmt.Errorf("draw of %s: %w (or the units changed since the draw began)", item, ErrSeedMismatch)
		default:
			return fmt.Errorf("draw batch script: unknown code %d", code)
		}
	}
}

// appendDrawBatch appends to args the draw batch's entries: the winners from..won-1 with their
// order, user, request, quantity, time and rank, then the order IDs of the waitlisted won..end-1.
func appendDrawBatch(args []any, plan drawPlan, from, won, end int) []any {
	for i := from; i < won; i++ {
		e := plan.winners[i]
		args = append(args, e.OrderID, e.UserID, e.RequestID, e.Quantity, e.Placed.UnixMilli(), i)
	}
	for i := won; i < end; i++ {
		args = append(args, plan.orders[i])
	}
	return args
}

// planDraw reads item's entries and ranks them; the entries that may win (in rank order
// until one does not fit in units) are read in full from their state hashes.
func (l *Ledger) planDraw(ctx context.Context, item string, seed []byte, units int64) (drawPlan, error) {
	users, orders, err := l.scanEntries(ctx, item)
	if err != nil {
		return drawPlan{}, err
	}
	ids := make([]string, len(orders))
	for i, o := range orders {
		_, ids[i], _ = strings.Cut(o, "-") // the order event's stream ID: ties go to the earlier
	}
	order := rankOrder(seed, users, ids)
	plan := drawPlan{orders: make([]string, 0, len(order))}
	for j, i := range order {
		if j > 0 && users[i] == users[order[j-1]] {
			continue // HSCAN returned the field twice
		}
		plan.orders = append(plan.orders, orders[i])
	}
	p := l.keys.Partition(item)
	var full []Entry
	for len(full) < len(plan.orders) {
		more, err := l.entryDetails(ctx, p, plan.orders[len(full):min(len(full)+1000, len(plan.orders))])
		if err != nil {
			return drawPlan{}, err
		}
		full = append(full, more...)
		if won := Winners(full, units); won < len(full) {
			plan.winners = full[:won]
			return plan, nil
		}
	}
	plan.winners = full
	return plan, nil
}

// scanEntries reads item's entries hash (user -> order), HSCAN by HSCAN. A field may come
// twice (HSCAN's guarantee is at least once); nothing is added once registration closed.
func (l *Ledger) scanEntries(ctx context.Context, item string) (users, orders []string, err error) {
	key := l.keys.DrawEntries(item)
	n, err := l.rdb.HLen(ctx, key).Result()
	if err != nil {
		return nil, nil, redisErr("count draw entries", err)
	}
	users, orders = make([]string, 0, n), make([]string, 0, n)
	var cursor uint64
	for {
		kv, next, err := l.rdb.HScan(ctx, key, cursor, "", entryScanCount).Result()
		if err != nil {
			return nil, nil, redisErr("read draw entries", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			users, orders = append(users, kv[i]), append(orders, kv[i+1])
		}
		if cursor = next; cursor == 0 {
			return users, orders, nil
		}
	}
}

// entryDetails reads the entries orders (of partition p) from their state hashes, in one
// pipeline.
func (l *Ledger) entryDetails(ctx context.Context, p int, orders []string) ([]Entry, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(orders))
	for i, id := range orders {
		cmds[i] = pipe.HMGet(ctx, l.keys.Order(p, id), "user_id", "request_id", "quantity", "ts")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, redisErr("read draw entries' states", err)
	}
	out := make([]Entry, len(orders))
	for i, c := range cmds {
		v := c.Val()
		user, _ := v[0].(string)
		req, _ := v[1].(string)
		q := intField(v[2])
		if user == "" || req == "" || q < 1 {
			return nil, fmt.Errorf("draw entry %s: %w: its state hash lacks user_id, request_id or quantity", orders[i], ErrMalformed)
		}
		_, sid, _ := strings.Cut(orders[i], "-")
		out[i] = Entry{OrderID: orders[i], UserID: user, RequestID: req, Quantity: q, Placed: msField(v[3]), StreamID: sid}
	}
	return out, nil
}

// RankEntries orders entries by their rank under seed (ties, which HMAC-SHA256 makes
// practically impossible, by order ID), computing each Rank.
func RankEntries(seed []byte, entries []Entry) {
	users, ids := make([]string, len(entries)), make([]string, len(entries))
	for i, e := range entries {
		users[i], ids[i] = e.UserID, e.StreamID
	}
	order := rankOrder(seed, users, ids)
	ranked := make([]Entry, len(entries))
	for j, i := range order {
		ranked[j] = entries[i]
		ranked[j].Rank = DrawRank(seed, entries[i].UserID)
	}
	copy(entries, ranked)
}

// rankOrder returns the indexes of users in rank order: by DrawRank, ties by the stream IDs
// ids. The ranks are computed on every CPU.
func rankOrder(seed []byte, users, ids []string) []int {
	ranks := make([][32]byte, len(users))
	workers := runtime.GOMAXPROCS(0)
	chunk := (len(users) + workers - 1) / workers
	var wg sync.WaitGroup
	for from := 0; from < len(users); from += chunk {
		wg.Go(func() {
			m := hmac.New(sha256.New, seed)
			for i := from; i < min(from+chunk, len(users)); i++ {
				m.Reset()
				m.Write([]byte(users[i]))
				m.Sum(ranks[i][:0])
			}
		})
	}
	wg.Wait()
	type key struct {
		head uint64 // the rank's first 8 bytes: most comparisons end here
		i    int
	}
	keys := make([]key, len(users))
	for i := range keys {
		keys[i] = key{binary.BigEndian.Uint64(ranks[i][:8]), i}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.head != b.head {
			if a.head < b.head {
				return -1
			}
			return 1
		}
		if c := bytes.Compare(ranks[a.i][:], ranks[b.i][:]); c != 0 {
			return c
		}
		return CompareIDs(ids[a.i], ids[b.i])
	})
	order := make([]int, len(keys))
	for j, k := range keys {
		order[j] = k.i
	}
	return order
}

// Winners returns how many of the ranked entries win units: entries win in rank order while
// their quantity fits in the units left; the first that does not fit, and every entry after
// it, waits (so the waitlist, like the draw, never lets a later rank pass an earlier one).
func Winners(ranked []Entry, units int64) int {
	for i, e := range ranked {
		if e.Quantity > units {
			return i
		}
		units -= e.Quantity
	}
	return len(ranked)
}

// dueDraw returns item if it is a draw whose commitment seed matches and whose time has come
// by Redis TIME: ErrNotDraw, ErrSeedMismatch or ErrDrawNotDue otherwise.
func (l *Ledger) dueDraw(ctx context.Context, item string, seed []byte) (Item, error) {
	it, err := l.Item(ctx, item)
	if err != nil {
		return Item{}, err
	}
	if it.DrawAt.IsZero() {
		return Item{}, ErrNotDraw
	}
	if SeedCommitment(seed) != it.DrawCommit {
		return Item{}, ErrSeedMismatch
	}
	now, err := l.RedisTime(ctx)
	if err != nil {
		return Item{}, err
	}
	if now.Before(it.DrawAt) {
		return Item{}, fmt.Errorf("%w: draw at %s", ErrDrawNotDue, it.DrawAt.UTC().Format(time.RFC3339))
	}
	return it, nil
}
