package ledger

import (
	"sync"
	"sync/atomic"
	"time"
)

// The winner index answers purchases of sold-out items from memory, with no Redis command.
//
// Each serving process tails every partition stream with plain XREAD (not the projector's
// group), from its first retained entry, and keeps per item the request_ids whose order events
// it read (order ID, user, time). The purchase script returns, with its sold-out reply, the
// stream's last ID: the item was sold out as of that ledger position X. Every order of the item
// up to X is in its partition's stream, so once the tail has read past X, every such order is
// indexed, provided the tail has read the item's whole history (it read the event that created
// the item, or the stream had never lost an entry when the tail began). An order after X needs
// stock, which only an event after X gives back (stock, restock, cancelled, expired); that
// event ends the item's sold-out state when the tail reads it, and the script that wrote it
// set the item's reopen_at: the purchase script sells nothing of the item until Redis TIME
// reaches it, the sold-out lease L after the event.
//
// The lease: a partition is answered locally only while its tail's last read that reached the
// end of the stream was sent less than L minus a tenth of it ago (monotonic clock). A winner
// after a reopening exists only once L has passed on Redis's clock since the reopening event;
// by then every process still answering locally has sent a read after that event, so it has
// read it and no longer says sold out. A winner's retry and a new buyer after a reopening
// therefore never get "sold out" from a stale process. The tail blocks at most L/4 per read,
// so that an idle partition keeps its lease.
//
// While the item is sold out as of X, the tail has read past X and the lease holds, a purchase
// is answered as the script would answer it: the winner's own request_id gets its order (409),
// another user's reuse of it ErrRequestIDTaken, anyone else ErrSoldOut. In every other case
// (tail behind, failing, lease lapsed, item over the cap or with trimmed history, an
// idempotency key that may have expired, a sale window that may have closed) Purchase asks
// Redis.

// Defaults of the winner index.
const (
	// DefaultWinnerIndexMax is the number of orders a process indexes at most.
	DefaultWinnerIndexMax = 1_000_000
	// leaseMarginDiv: a process answers locally for the lease less a tenth of it after its
	// read, and a stock command waits the lease plus a tenth of it: clocks may run at rates
	// that differ by that much (bounded drift; they need not agree on the time).
	leaseMarginDiv = 10
	// winnerCount is the most entries one XREAD returns per partition.
	winnerCount = 1000
	// winnerLinger is how long the tail waits after a read that returned new entries but no
	// full page, before it reads again: under load each read then carries the entries of
	// several purchase calls (one XREAD, one event-loop turn of Redis, for many), and the index
	// lags that much more (purchases that find an item sold out meanwhile ask Redis, which
	// answers them as before). At most the read's block time.
	winnerLinger = 5 * time.Millisecond
	// winnerCheck is how often the tail checks that no entry it has not read was deleted (and
	// before it renews a lapsed lease). While the lease holds the tail is less than the lease
	// behind, and trimming touches older entries: the check is a safety net.
	winnerCheck = 10 * time.Second
	// winnerClockMargin covers a skew between this host's clock and Redis's: an idempotency
	// key is taken to be alive only until its expiry minus this, a sale window open only until
	// its end minus this.
	winnerClockMargin = time.Minute
)

// winner is one indexed order. The request_id is its map key; user points into the same
// allocation (see add).
type winner struct {
	id   streamPos // the order's own stream ID (not its entry's): order ID "<partition>-<id>"
	ts   int64     // the order's time, unix ms (Redis TIME): its idempotency key lives TTL from it
	user string
}

// winnerItem is what the index knows of one item.
type winnerItem struct {
	orders map[string]winner
	// over: the item passed the cap, or had an entry the tail could not read; its orders are
	// dropped and it is never answered locally.
	over bool
	// whole: the tail has read the item's whole history (the event that created it, or the
	// stream had lost no entry when the tail began).
	whole bool
	// soldAt: the purchase script found the item sold out (no stock left) as of this stream
	// position; zero when not known sold out.
	soldAt streamPos
	// changedAt is the position of the last stock, restock, cancelled or expired event of the
	// item the tail read.
	changedAt streamPos
	// endMS is the sale end in force after the last stock event read (0: open).
	endMS int64
}

// winnerPart is the index of one partition, with its tail's position.
type winnerPart struct {
	mu sync.RWMutex
	// pos is the last entry read; synced says that the tail runs and has read everything
	// after its starting point up to pos with no entry lost.
	pos    streamPos
	synced bool
	// broken: the tail read an entry that names no item of the partition; nothing of the
	// partition is answered locally until it is rebuilt.
	broken bool
	// trimmed: entries had been deleted from the stream (up to this ID) when the tail began
	// reading it; then only items whose creation the tail read are whole.
	trimmed streamPos
	items   map[string]*winnerItem
	// deleted is the bound of the stream's deleted entries at the last check (see
	// deletedUpTo), checkedPos the tail's position when that check was sent.
	deleted, checkedPos streamPos
	// leaseUntil is when local answers end (nanoseconds since winners.start, monotonic): the
	// send time of the tail's last read that reached the stream's end, plus the lease less
	// its margin.
	leaseUntil atomic.Int64
}

type winners struct {
	max   int64
	total atomic.Int64
	ttl   time.Duration
	// lease is how long a read keeps local answers valid (the lease less its margin); block
	// how long one XREAD waits.
	lease, block time.Duration
	start        time.Time
	parts        []*winnerPart
	// localAnswers counts purchases answered from the index (for tests and metrics).
	localAnswers atomic.Int64
	// beforeRead, when set (by tests), runs before each XREAD of the tail.
	beforeRead func()
}

func newWinners(partitions int, most int64, ttl, lease time.Duration) *winners {
	w := &winners{
		max: most, ttl: ttl, start: time.Now(), parts: make([]*winnerPart, partitions),
		lease: lease - lease/leaseMarginDiv, block: max(lease/4, time.Millisecond),
	}
	for p := range w.parts {
		w.parts[p] = &winnerPart{items: map[string]*winnerItem{}}
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
	part.mu.RLock()
	defer part.mu.RUnlock()
	it := part.items[req.ItemID]
	if !part.synced || it == nil || it.over || !it.whole || it.soldAt == (streamPos{}) || part.pos.less(it.soldAt) {
		return nil, false
	}
	nowMS := time.Now().UnixMilli()
	o, winner := it.orders[req.RequestID]
	switch {
	case winner && nowMS >= o.ts+(w.ttl-winnerClockMargin).Milliseconds():
		return nil, false // the idempotency key may have expired: Redis tells
	case !winner && it.endMS > 0 && nowMS >= it.endMS-winnerClockMargin.Milliseconds():
		return nil, false // the sale window closes: the script answers that
	}
	// The lease is checked last: the answer is given now, with what was read.
	if w.now() >= part.leaseUntil.Load() {
		return nil, false
	}
	w.localAnswers.Add(1)
	switch {
	case !winner:
		return ErrSoldOut, true
	case o.user == req.UserID:
		return &DuplicateError{OrderID: OrderID(p, o.id.String())}, true
	}
	return ErrRequestIDTaken, true
}

// soldOut records that the purchase script found item sold out as of stream ID last, unless
// the tail has already read a stock, restock, cancelled or expired event of the item after
// last.
func (w *winners) soldOut(p int, item, last string) {
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
	it := part.item(item)
	if pos.less(it.changedAt) || it.soldAt != (streamPos{}) {
		return
	}
	it.soldAt = pos
}

// item returns the entry of item, creating it; part.mu must be held for writing.
func (part *winnerPart) item(item string) *winnerItem {
	it := part.items[item]
	if it == nil {
		it = &winnerItem{whole: part.trimmed == (streamPos{})}
		part.items[item] = it
	}
	return it
}

// reset forgets everything of the partition, before a rebuild from the stream's first entry;
// deleted is the bound of the stream's deleted entries now (see deletedUpTo).
func (w *winners) reset(part *winnerPart, deleted streamPos) {
	part.mu.Lock()
	defer part.mu.Unlock()
	for _, it := range part.items {
		w.total.Add(-int64(len(it.orders)))
	}
	part.items = map[string]*winnerItem{}
	part.pos = streamPos{}
	part.synced = false
	part.broken = false
	part.trimmed = deleted
	part.deleted = deleted
	part.checkedPos = streamPos{}
	part.leaseUntil.Store(0)
}

// apply indexes the events read from partition p, in stream order; part.mu must be held for
// writing. The partition's position (pos, and the soldAt and changedAt it is compared with) is
// the entry's StreamID; an order is indexed with its own ID.
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
			w.add(it, e, orderPos(e, pos))
		case EventStock, EventRestock, EventCancelled, EventExpired:
			// Units came back (or the stock changed): the item is no longer sold out as of here.
			it.changedAt = pos
			if it.soldAt.less(pos) {
				it.soldAt = streamPos{}
			}
			if e.Type == EventStock {
				it.endMS = e.EndMS
				if e.Created {
					it.whole = true
				}
			}
		}
	}
}

// orderPos returns the stream ID of order e from its OrderID: in an `orders` entry each order
// has its own, at or before the entry's (pos, returned when OrderID does not parse).
func orderPos(e Event, pos streamPos) streamPos {
	if _, sid, err := ParseOrderID(e.OrderID); err == nil {
		if o, ok := parsePos(sid); ok {
			return o
		}
	}
	return pos
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

// WinnerStats is the state of the winner index and of this process's sold-out answers.
type WinnerStats struct {
	// Orders is the number of orders indexed; Max the cap.
	Orders, Max int64
	// Synced counts the partitions whose tail runs and has read without a gap; Leased those
	// of them whose lease holds now (answered locally).
	Synced, Leased int
	// LocalAnswers counts purchases answered from the index (sold out, and winners' retries).
	LocalAnswers int64
	// SoldOutLocal and SoldOutRedis count the sold-out answers given from the index and by
	// the purchase script.
	SoldOutLocal, SoldOutRedis int64
}

// WinnerStats returns the state of the winner index (Orders, Max, Synced, Leased and
// LocalAnswers zero when it is disabled).
func (l *Ledger) WinnerStats() WinnerStats {
	st := WinnerStats{SoldOutLocal: l.soldOutLocal.Load(), SoldOutRedis: l.soldOutRedis.Load()}
	w := l.winners
	if w == nil {
		return st
	}
	st.Orders, st.Max, st.LocalAnswers = w.total.Load(), w.max, w.localAnswers.Load()
	now := w.now()
	for _, part := range w.parts {
		part.mu.RLock()
		if part.synced {
			st.Synced++
			if now < part.leaseUntil.Load() {
				st.Leased++
			}
		}
		part.mu.RUnlock()
	}
	return st
}
