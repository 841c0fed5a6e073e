package ledger

import (
	"context"
	"sync"
	"time"
)

// A request_id that the winner index does not hold may still have won: its order can be in
// the stream while this process's tail has not run yet (a stock change the process has not
// seen, then a new winner's retry, reaching it within microseconds). A local "sold out" is
// therefore given only after a read barrier: the partition stream's last ID, read by a command
// sent after the request arrived, and the tail's position at or past it. Then every order
// placed before the request arrived is indexed, and the index answers as the script would.
//
// Barrier reads are shared: requests of one partition that arrive while a read is on the wire
// join the next one, sent as soon as it returns. Under a flood that is one XREVRANGE COUNT 1
// per round trip for all the sold-out answers of the partition in flight, instead of one GET
// each.

// winnerBarrierWait bounds how long a request waits for the tail to reach the barrier; past
// it the purchase goes the Redis way.
const winnerBarrierWait = 100 * time.Millisecond

// barrier is one partition's shared stream-top reads.
type barrier struct {
	mu      sync.Mutex
	next    *barrierRound // the round that arriving requests join; nil: none yet
	running bool          // a goroutine sends rounds
}

type barrierRound struct {
	done chan struct{}
	top  streamPos // the stream's last ID when the round's read ran (zero: empty stream)
	err  error
}

// streamTop returns partition p's last stream ID as read by a command sent after the call.
func (l *Ledger) streamTop(ctx context.Context, p int) (streamPos, error) {
	b := &l.winners.parts[p].barrier
	b.mu.Lock()
	r := b.next
	if r == nil {
		r = &barrierRound{done: make(chan struct{})}
		b.next = r
	}
	if !b.running {
		b.running = true
		go l.runBarrier(p)
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.top, r.err
	case <-ctx.Done():
		return streamPos{}, ctx.Err()
	}
}

// runBarrier sends partition p's rounds one after the other until none waits.
func (l *Ledger) runBarrier(p int) {
	b := &l.winners.parts[p].barrier
	for {
		b.mu.Lock()
		r := b.next
		if r == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.next = nil // later arrivals open the next round: this read is sent after every joiner
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		msgs, err := l.rdb.XRevRangeN(ctx, l.keys.Events(p), "+", "-", 1).Result()
		cancel()
		switch {
		case err != nil:
			r.err = redisErr("read ledger top", err)
		case len(msgs) > 0:
			r.top, _ = parsePos(msgs[0].ID)
		}
		close(r.done)
	}
}

// caughtUp waits until partition p's tail has read up to top, at most winnerBarrierWait.
func (w *winners) caughtUp(ctx context.Context, p int, top streamPos) bool {
	part := w.parts[p]
	timer := time.NewTimer(winnerBarrierWait)
	defer timer.Stop()
	for {
		part.mu.RLock()
		ok := part.synced && !part.pos.less(top)
		advanced := part.advanced
		part.mu.RUnlock()
		if ok {
			return true
		}
		select {
		case <-advanced:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// advance wakes the requests waiting in caughtUp for partition part; part.mu is held.
func (part *winnerPart) advance() {
	if part.advanced != nil {
		close(part.advanced)
	}
	part.advanced = make(chan struct{})
}
