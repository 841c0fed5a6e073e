package ledger

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// soldOut remembers the items this process saw sold out (the script refused for lack of stock
// with none left), so that purchases of them skip the script for a while: a flash sale's
// second phase is almost all refusals. An entry ends when its TTL runs out or when a stock or
// restock event for the item is announced (WatchStock), whichever comes first; the TTL bounds
// how long a missed announcement can keep a restocked item looking sold out.
type soldOut struct {
	ttl   time.Duration
	mu    sync.RWMutex
	until map[string]time.Time
	// epoch counts forgets, so that a sold-out answer that raced with a stock change is not
	// remembered (see mark).
	epoch uint64
}

// check reports whether item is known sold out, and returns the time and epoch to pass to
// mark if the caller goes on to ask Redis: one lock for both.
func (s *soldOut) check(item string) (known bool, now time.Time, epoch uint64) {
	now = time.Now()
	if s.ttl <= 0 {
		return false, now, 0
	}
	s.mu.RLock()
	until, ok := s.until[item]
	epoch = s.epoch
	s.mu.RUnlock()
	return ok && now.Before(until), now, epoch
}

// mark remembers item as sold out, unless a forget happened since epoch was read: the sold-out
// answer may then predate a restock.
func (s *soldOut) mark(item string, now time.Time, epoch uint64) {
	if s.ttl <= 0 {
		return
	}
	s.mu.Lock()
	if s.epoch == epoch {
		s.until[item] = now.Add(s.ttl)
	}
	s.mu.Unlock()
}

func (s *soldOut) forget(item string) {
	s.mu.Lock()
	delete(s.until, item)
	s.epoch++
	s.mu.Unlock()
}

// soldOutOrDuplicate answers a purchase of an item known to be sold out: a duplicate of an
// earlier order still gets its order back (one GET of the idempotency key), as the script
// would answer it (its user's order, ErrRequestIDTaken for anyone else); anything else is
// ErrSoldOut without running the script.
func (l *Ledger) soldOutOrDuplicate(ctx context.Context, req PurchaseRequest) (Receipt, error) {
	v, err := l.calls.get(ctx, l.keys.Request(req.ItemID, req.RequestID))
	switch {
	case errors.Is(err, redis.Nil):
		return Receipt{}, ErrSoldOut
	case err != nil:
		return Receipt{}, redisErr("purchase", err)
	}
	if orderID, user, ok := RequestOwner(v); ok && user == req.UserID {
		return Receipt{}, &DuplicateError{OrderID: orderID}
	}
	return Receipt{}, ErrRequestIDTaken
}

// WatchStock listens for the stock and restock announcements of the scripts and forgets
// announced items as sold out, until ctx is done. It returns nil then; while Redis is away the
// subscription reconnects by itself, and the TTL bounds what is missed meanwhile.
func (l *Ledger) WatchStock(ctx context.Context) error {
	ps := l.rdb.Subscribe(ctx, l.keys.StockChanges())
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			l.soldOut.forget(m.Payload)
			if ValidateItemID(m.Payload) == nil {
				l.winners.forget(l.keys.Partition(m.Payload), m.Payload)
			}
		}
	}
}
