package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The winner index answers purchases of sold-out items from memory, with no Redis command.
//
// Each serving process tails every partition stream with plain XREAD (not the projector's
// group), from its first entry, and keeps per item the request_ids whose order events it read
// (order ID, user, time). The purchase script returns, with its sold-out reply, the stream's
// last ID: the item was sold out as of that ledger position X. Every order of the item is in
// its partition's stream, so once the tail has read past X, every order of the item up to X is
// indexed; an order after X needs stock, which only a stock or restock event after X gives,
// and the tail ends the item's sold-out state when it reads one (the Pub/Sub announcement ends
// it sooner). While the item is sold out as of X and the tail has read past X, continuously
// from the stream's first entry and recently (see winnerFresh), a purchase is answered as the
// script would answer it: the winner's own request_id gets its order (409), another user's
// reuse of it ErrRequestIDTaken, anyone else ErrSoldOut once a read barrier has shown the tail
// holds every order placed before the request arrived (see streamTop). In every other case (tail behind,
// broken, stale, item over the cap, an idempotency key that may have expired, a sale window
// that may have closed) Purchase takes the Redis path as before.

// Defaults of the winner index.
const (
	// DefaultWinnerIndexMax is the number of orders a process indexes at most.
	DefaultWinnerIndexMax = 1_000_000
	// winnerBlock is how long one XREAD of the tail waits for new entries.
	winnerBlock = time.Second
	// winnerFresh is how recent the tail's last reply must be for a local answer: a tail on a
	// silently dead connection stops answering after it.
	winnerFresh = 5 * winnerBlock
	// winnerCount is the most entries one XREAD returns per partition.
	winnerCount = 1000
	// winnerClockMargin covers a skew between this host's clock and Redis's: an idempotency
	// key is taken to be alive only until its expiry minus this, a sale window open only until
	// its end minus this.
	winnerClockMargin = time.Minute
)

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

// winner is one indexed order. The request_id is its map key; user points into the same
// allocation (see add).
type winner struct {
	id   streamPos // the order's stream ID: order ID "<partition>-<id>"
	ts   int64     // the order's time, unix ms (Redis TIME): its idempotency key lives TTL from it
	user string
}

// winnerItem is what the index knows of one item.
type winnerItem struct {
	orders map[string]winner
	// over: the item passed the cap, or had an entry the tail could not read; its orders are
	// dropped and it is never answered locally.
	over bool
	// soldAt: the purchase script found the item sold out (no stock left) as of this stream
	// position; zero when not known sold out.
	soldAt streamPos
	// changedAt is the position of the last stock or restock event of the item the tail read.
	changedAt streamPos
	// endMS is the sale end in force after the last stock event read (0: open).
	endMS int64
}

// winnerPart is the index of one partition, with its tail's position.
type winnerPart struct {
	mu sync.RWMutex
	// pos is the last entry read; synced says that everything up to pos was read continuously
	// from the stream's first entry, with no entry deleted, and that the tail runs.
	pos    streamPos
	synced bool
	// broken: the tail read an entry that names no item of the partition; nothing of the
	// partition is answered locally until it is rebuilt.
	broken bool
	items  map[string]*winnerItem
	// epoch counts forgets (announced stock changes), so that a sold-out reply that raced with
	// one is not recorded.
	epoch atomic.Uint64
	// lastReply is when the tail last had a reply from Redis covering this partition
	// (nanoseconds since winners.start, monotonic).
	lastReply atomic.Int64
	// advanced is closed (and replaced) each time the tail has read more (see caughtUp).
	advanced chan struct{}
	barrier  barrier
}

type winners struct {
	max   int64
	total atomic.Int64
	ttl   time.Duration
	start time.Time
	parts []*winnerPart
	// localAnswers counts purchases answered from the index (for tests and metrics).
	localAnswers atomic.Int64
	// beforeRead, when set (by tests), runs before each XREAD of the tail.
	beforeRead func()
}

func newWinners(partitions int, max int64, ttl time.Duration) *winners {
	w := &winners{max: max, ttl: ttl, start: time.Now(), parts: make([]*winnerPart, partitions)}
	for p := range w.parts {
		w.parts[p] = &winnerPart{items: map[string]*winnerItem{}, advanced: make(chan struct{})}
		w.parts[p].lastReply.Store(-int64(winnerFresh) - 1) // no reply yet
	}
	return w
}

func (w *winners) now() int64 { return int64(time.Since(w.start)) }

// answer answers req from the index when it can (ok true), with what the purchase script
// would answer.
func (w *winners) answer(p int, req PurchaseRequest) (err error, ok bool) {
	if w == nil {
		return nil, false
	}
	part := w.parts[p]
	if w.now()-part.lastReply.Load() > int64(winnerFresh) {
		return nil, false
	}
	part.mu.RLock()
	defer part.mu.RUnlock()
	it := part.items[req.ItemID]
	if !part.synced || it == nil || it.over || it.soldAt == (streamPos{}) || part.pos.less(it.soldAt) {
		return nil, false
	}
	nowMS := time.Now().UnixMilli()
	if o, found := it.orders[req.RequestID]; found {
		if nowMS >= o.ts+(w.ttl-winnerClockMargin).Milliseconds() {
			return nil, false // the idempotency key may have expired: Redis tells
		}
		w.localAnswers.Add(1)
		if o.user == req.UserID {
			return &DuplicateError{OrderID: OrderID(p, o.id.String())}, true
		}
		return ErrRequestIDTaken, true
	}
	if it.endMS > 0 && nowMS >= it.endMS-winnerClockMargin.Milliseconds() {
		return nil, false // the sale window closes: the script answers that
	}
	return errNeedsBarrier, true
}

// errNeedsBarrier is answer's "sold out, unless an order the tail has not read yet holds the
// request_id": Purchase confirms it with a read barrier (see streamTop).
var errNeedsBarrier = errors.New("sold out as of the tail")

// epoch returns partition p's forget count, to pass to soldOut.
func (w *winners) epoch(p int) uint64 {
	if w == nil {
		return 0
	}
	return w.parts[p].epoch.Load()
}

// soldOut records that the purchase script found item sold out as of stream ID last, unless
// a forget happened since epoch was read or the tail has already read a stock or restock
// event of the item after last.
func (w *winners) soldOut(p int, item, last string, epoch uint64) {
	if w == nil {
		return
	}
	pos, ok := parsePos(last)
	if !ok {
		return
	}
	part := w.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	if part.epoch.Load() != epoch {
		return
	}
	it := part.item(item)
	if pos.less(it.changedAt) || it.soldAt != (streamPos{}) {
		return
	}
	it.soldAt = pos
}

// forget ends item's sold-out state (a stock change was announced, or an order placed).
func (w *winners) forget(p int, item string) {
	if w == nil {
		return
	}
	part := w.parts[p]
	part.mu.Lock()
	part.epoch.Add(1)
	if it := part.items[item]; it != nil {
		it.soldAt = streamPos{}
	}
	part.mu.Unlock()
}

// soldOutKnown reports whether item has a sold-out state, without locking for writing.
func (w *winners) soldOutKnown(p int, item string) bool {
	if w == nil {
		return false
	}
	part := w.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	it := part.items[item]
	return it != nil && it.soldAt != (streamPos{})
}

// item returns the entry of item, creating it; part.mu must be held for writing.
func (part *winnerPart) item(item string) *winnerItem {
	it := part.items[item]
	if it == nil {
		it = &winnerItem{}
		part.items[item] = it
	}
	return it
}

// reset forgets everything of the partition (before a rebuild from the first entry).
func (w *winners) reset(part *winnerPart) {
	part.mu.Lock()
	defer part.mu.Unlock()
	for _, it := range part.items {
		w.total.Add(-int64(len(it.orders)))
	}
	part.items = map[string]*winnerItem{}
	part.pos = streamPos{}
	part.synced = false
	part.broken = false
	part.epoch.Add(1)
}

// apply indexes the events read from partition p, in stream order; part.mu must be held for
// writing.
func (w *winners) apply(part *winnerPart, p int, keys Keys, events []Event) {
	for _, e := range events {
		pos, _ := parsePos(e.StreamID)
		part.pos = pos
		if e.Malformed != nil {
			// No script writes such an entry (or it is of a type this code does not know): the
			// item it names, if any, is left to Redis; without an item, the whole partition.
			if e.ItemID != "" && ValidateItemID(e.ItemID) == nil && keys.Partition(e.ItemID) == p {
				w.drop(part.item(e.ItemID))
				continue
			}
			part.broken = true
			part.synced = false
			continue
		}
		it := part.item(e.ItemID)
		switch e.Type {
		case EventOrder:
			w.add(it, e, pos)
		case EventStock, EventRestock, EventCancelled, EventExpired:
			// Units came back (or the stock changed): the item is no longer sold out as of here.
			it.changedAt = pos
			if it.soldAt.less(pos) {
				it.soldAt = streamPos{}
			}
			if e.Type == EventStock {
				it.endMS = e.EndMS
			}
		}
	}
}

// add indexes order e of item it, unless it is over the cap.
func (w *winners) add(it *winnerItem, e Event, pos streamPos) {
	if it.over {
		return
	}
	if _, dup := it.orders[e.RequestID]; !dup {
		if w.total.Load() >= w.max {
			w.drop(it)
			return
		}
		w.total.Add(1)
	}
	if it.orders == nil {
		it.orders = map[string]winner{}
	}
	// One allocation for both IDs: the key and the user share it.
	b := make([]byte, 0, len(e.RequestID)+len(e.UserID))
	b = append(append(b, e.RequestID...), e.UserID...)
	s := string(b)
	it.orders[s[:len(e.RequestID)]] = winner{id: pos, ts: e.Time.UnixMilli(), user: s[len(e.RequestID):]}
}

// drop takes item it out of local answers for good (in this process) and frees its orders.
func (w *winners) drop(it *winnerItem) {
	w.total.Add(-int64(len(it.orders)))
	it.orders = nil
	it.over = true
}

// WinnerStats is the state of the winner index.
type WinnerStats struct {
	// Orders is the number of orders indexed; Max the cap.
	Orders, Max int64
	// Synced counts the partitions whose tail has read continuously from the first entry.
	Synced int
	// LocalAnswers counts purchases answered from the index.
	LocalAnswers int64
}

// WinnerStats returns the state of the winner index (zero when it is disabled).
func (l *Ledger) WinnerStats() WinnerStats {
	w := l.winners
	if w == nil {
		return WinnerStats{}
	}
	st := WinnerStats{Orders: w.total.Load(), Max: w.max, LocalAnswers: w.localAnswers.Load()}
	for _, part := range w.parts {
		part.mu.RLock()
		if part.synced {
			st.Synced++
		}
		part.mu.RUnlock()
	}
	return st
}

// TailWinners builds the winner index and keeps it current until ctx is done (it returns nil
// then): it reads every partition stream from its first entry with XREAD, then waits for new
// entries. On an error (Redis away, restarting) the partitions stop answering locally; when
// Redis answers again the tail resumes after its last entry if that entry is still there and
// nothing was deleted from the stream, and rebuilds the partition from its first entry
// otherwise. A stream with deleted entries (XDEL, XTRIM) is never answered locally. log may be
// nil.
func (l *Ledger) TailWinners(ctx context.Context, log *slog.Logger) error {
	w := l.winners
	if w == nil {
		<-ctx.Done()
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// One XREAD follows every partition on one node. On Redis Cluster the partitions live in
	// different slots, which one command cannot name together: one tail per partition there.
	all := make([]int, l.keys.Partitions())
	for p := range all {
		all[p] = p
	}
	groups := [][]int{all}
	if _, ok := l.rdb.(*redis.ClusterClient); ok {
		groups = groups[:0]
		for _, p := range all {
			groups = append(groups, []int{p})
		}
	}
	var wg sync.WaitGroup
	for _, ps := range groups {
		wg.Go(func() { l.tailLoop(ctx, ps, log) })
	}
	wg.Wait()
	return nil
}

// tailLoop runs tail over partitions ps until ctx is done, backing off after each error.
func (l *Ledger) tailLoop(ctx context.Context, ps []int, log *slog.Logger) {
	w := l.winners
	backoff := 100 * time.Millisecond
	failing := false
	for ctx.Err() == nil {
		read, err := l.tail(ctx, ps)
		for _, p := range ps {
			part := w.parts[p]
			part.mu.Lock()
			part.synced = false
			part.mu.Unlock()
		}
		if ctx.Err() != nil {
			break
		}
		if read {
			backoff = 100 * time.Millisecond
			failing = false
		}
		if !failing {
			log.Warn("winner index: tail stopped; purchases of sold-out items ask Redis until it resumes", "partitions", len(ps), "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// tail checks the position of each partition of all (resume or rebuild) and reads until an error; read
// reports whether any read succeeded.
func (l *Ledger) tail(ctx context.Context, all []int) (read bool, err error) {
	w := l.winners
	var ps []int
	for _, p := range all {
		ok, err := l.resumable(ctx, p, w.parts[p])
		if err != nil {
			return false, err
		}
		if ok {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		<-ctx.Done()
		return false, ctx.Err()
	}
	streams := make([]string, 2*len(ps))
	for i, p := range ps {
		streams[i] = l.keys.Events(p)
	}
	checked := time.Now()
	for {
		if time.Since(checked) >= winnerBlock {
			if err := l.checkNoDeletes(ctx, ps); err != nil {
				return read, err
			}
			checked = time.Now()
		}
		for i, p := range ps {
			part := w.parts[p]
			part.mu.RLock()
			streams[len(ps)+i] = part.pos.String()
			part.mu.RUnlock()
		}
		if w.beforeRead != nil {
			w.beforeRead()
		}
		res, err := l.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: winnerCount, Block: winnerBlock}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return read, redisErr("tail ledger", err)
		}
		read = true
		now := w.now()
		for _, s := range res {
			p := slices.Index(streams[:len(ps)], s.Stream)
			if p < 0 {
				continue
			}
			p = ps[p]
			events := make([]Event, len(s.Messages))
			for i, m := range s.Messages {
				events[i] = l.decodeOrMark(p, m)
			}
			part := w.parts[p]
			part.mu.Lock()
			w.apply(part, p, l.keys, events)
			part.mu.Unlock()
		}
		for _, p := range ps {
			part := w.parts[p]
			part.mu.Lock()
			part.synced = !part.broken
			part.advance()
			part.mu.Unlock()
			part.lastReply.Store(now)
		}
		if ctx.Err() != nil {
			return read, ctx.Err()
		}
	}
}

// resumable checks whether partition p's tail can go on after its position: the stream has
// never had an entry deleted (XINFO STREAM's max-deleted-entry-id is 0-0) and still holds the
// entry at the position. Otherwise the partition is rebuilt from its first entry, and a stream
// with deleted entries is not indexed (false).
func (l *Ledger) resumable(ctx context.Context, p int, part *winnerPart) (bool, error) {
	info, err := l.rdb.XInfoStream(ctx, l.keys.Events(p)).Result()
	switch {
	case err != nil && isNoGroup(err):
		// No stream yet: nothing to index, read from the start once it appears.
		l.winners.reset(part)
		return true, nil
	case err != nil:
		return false, redisErr("tail ledger: stream info", err)
	}
	if deleted(info) {
		l.winners.reset(part)
		return false, nil
	}
	part.mu.RLock()
	pos := part.pos
	part.mu.RUnlock()
	if pos == (streamPos{}) {
		l.winners.reset(part)
		return true, nil
	}
	msgs, err := l.rdb.XRangeN(ctx, l.keys.Events(p), pos.String(), pos.String(), 1).Result()
	if err != nil {
		return false, redisErr("tail ledger: check position", err)
	}
	if len(msgs) == 0 {
		l.winners.reset(part) // the ledger is not the one read (lost, replaced): rebuild
	}
	return true, nil
}

// errDeleted: entries were deleted from a stream the tail reads.
var errDeleted = errors.New("entries were deleted from the ledger stream")

// deleted reports whether entries were ever deleted from the stream (XDEL, XTRIM): the tail
// may then have missed orders.
func deleted(info *redis.XInfoStream) bool {
	return info.EntriesAdded != info.Length || (info.MaxDeletedEntryID != "" && info.MaxDeletedEntryID != "0-0")
}

// checkNoDeletes makes sure that no entry was deleted from the partitions ps (one pipeline).
func (l *Ledger) checkNoDeletes(ctx context.Context, ps []int) error {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.XInfoStreamCmd, len(ps))
	for i, p := range ps {
		cmds[i] = pipe.XInfoStream(ctx, l.keys.Events(p))
	}
	pipe.Exec(ctx) // errors are read per command
	for i, c := range cmds {
		info, err := c.Result()
		if err != nil {
			if isNoGroup(err) {
				continue // not created yet
			}
			return redisErr("tail ledger: stream info", err)
		}
		if deleted(info) {
			return fmt.Errorf("tail ledger partition %d: %w", ps[i], errDeleted)
		}
	}
	return nil
}
