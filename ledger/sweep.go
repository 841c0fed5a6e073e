package ledger

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Sweeper expires the reserved orders whose payment deadline has passed. Any number of
// sweepers may run on one ledger (in every serve and project process): expire.lua re-checks
// each order's state and deadline, so an order is expired, and its units given back, once.
type Sweeper struct {
	l        *Ledger
	interval time.Duration
	batch    int64
	log      *slog.Logger
	lagMS    atomic.Int64
	expired  atomic.Int64
	open     atomic.Int64
}

// maxBatchesPerRound bounds one partition's work in one round, so that a huge backlog does
// not starve the other partitions; the next round goes on.
const maxBatchesPerRound = 100

// NewSweeper returns a sweeper of l that looks for due orders every interval, batch orders
// of a partition at a time.
func (l *Ledger) NewSweeper(interval time.Duration, batch int64, log *slog.Logger) *Sweeper {
	return &Sweeper{l: l, interval: max(interval, time.Millisecond), batch: max(batch, 1), log: log.With("component", "sweeper")}
}

// Run sweeps at once (catching up on what fell due while no sweeper ran) and then every
// interval until ctx ends. A failed round is logged and retried at the next tick.
func (s *Sweeper) Run(ctx context.Context) error {
	failing := false
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		_, err := s.Sweep(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			s.log.Warn("sweep failed; retrying every interval", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("sweep works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep runs one round over every partition: the orders due by Redis's clock, oldest first,
// are expired; then the lag is measured. It returns how many orders this round expired.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	now, err := s.l.RedisTime(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for p := range s.l.keys.Partitions() {
		for range maxBatchesPerRound {
			ids, err := s.l.DueOrders(ctx, p, now, s.batch)
			if err != nil {
				return n, err
			}
			for _, id := range ids {
				done, err := s.l.Expire(ctx, id)
				if err != nil {
					return n, err
				}
				if done {
					n++
					s.expired.Add(1)
				}
			}
			if int64(len(ids)) < s.batch {
				break
			}
		}
	}
	// Units that came back to a drawn item go to its waitlist, in rank order.
	if pr, err := s.l.PromoteDraws(ctx, int(s.batch)); err != nil {
		return n, err
	} else if pr.Promoted+pr.Lost > 0 || len(pr.Finished) > 0 {
		s.log.Info("draws moved on", "promoted", pr.Promoted, "lost", pr.Lost, "finished_with_units_left", pr.Finished)
	}
	var lag time.Duration
	var open int64
	for p := range s.l.keys.Partitions() {
		oldest, ok, err := s.l.OldestDue(ctx, p)
		if err != nil {
			return n, err
		}
		if ok && now.Sub(oldest) > lag {
			lag = now.Sub(oldest)
		}
		c, err := s.l.rdb.ZCard(ctx, s.l.keys.Due(p)).Result()
		if err != nil {
			return n, redisErr("count due orders", err)
		}
		open += c
	}
	s.lagMS.Store(lag.Milliseconds())
	s.open.Store(open)
	return n, nil
}

// Open is the number of orders still reserved (awaiting payment) at the last round.
func (s *Sweeper) Open() int64 { return s.open.Load() }

// Lag is how far Redis's clock was, at the last round, past the oldest deadline still due
// after it (0 when nothing overdue was left).
func (s *Sweeper) Lag() time.Duration { return time.Duration(s.lagMS.Load()) * time.Millisecond }

// Expired counts the orders this sweeper expired.
func (s *Sweeper) Expired() int64 { return s.expired.Load() }
