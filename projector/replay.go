package projector

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// Fresh empties the projection tables first; otherwise replay fills in what is missing.
	// It refuses with a *LiveError while projectors are live (LiveConsumers), unless Force.
	Fresh, Force bool
	// PageSize is the number of entries read and written per transaction (default 1000).
	PageSize int64
	// Progress, if set, is called after each page with the entries done and the total.
	Progress func(done, total int64)
}

// ReplayStats counts what a replay went through.
type ReplayStats struct {
	Entries, Orders, Restocks, Stocks, Malformed int64
	Elapsed                                      time.Duration
}

// LiveError is Replay's refusal to empty the tables under running projectors: one that reads
// its batch back after the truncation would take its own orders for conflicts and cancel them.
type LiveError struct {
	Consumers []string
}

func (e *LiveError) Error() string {
	return "projectors are live (" + strings.Join(e.Consumers, ", ") + ")"
}

// Replay rebuilds the MySQL projection from the whole ledger, every partition from its first
// entry, through the same idempotent Store.Apply the projector uses: running it twice, or
// while projectors run, changes nothing more. It never acknowledges or restocks: orders that
// conflict in MySQL are left to the projector, whose restock events a later replay applies.
func Replay(ctx context.Context, l *ledger.Ledger, store *Store, opt ReplayOptions) (ReplayStats, error) {
	start := time.Now()
	if opt.PageSize <= 0 {
		opt.PageSize = 1000
	}
	var st ReplayStats
	if opt.Fresh && !opt.Force {
		live, err := LiveConsumers(ctx, l)
		if err != nil {
			return st, err
		}
		if len(live) > 0 {
			return st, &LiveError{Consumers: live}
		}
	}
	var total int64
	for p := range l.Keys().Partitions() {
		n, err := l.Length(ctx, p)
		if err != nil {
			return st, err
		}
		total += n
	}
	if opt.Fresh {
		if err := store.Truncate(ctx); err != nil {
			return st, err
		}
	}
	for p := range l.Keys().Partitions() {
		after := ""
		for {
			events, err := l.Range(ctx, p, after, opt.PageSize)
			if err != nil {
				return st, err
			}
			if len(events) == 0 {
				break
			}
			after = events[len(events)-1].StreamID
			good := events[:0:0]
			for _, e := range events {
				switch {
				case e.Malformed != nil:
					st.Malformed++
					continue
				case e.Type == ledger.EventOrder:
					st.Orders++
				case e.Type == ledger.EventRestock:
					st.Restocks++
				case e.Type == ledger.EventStock:
					st.Stocks++
				}
				good = append(good, e)
			}
			if _, err := store.Apply(ctx, good); err != nil {
				return st, fmt.Errorf("replay partition %d at %s: %w", p, after, err)
			}
			st.Entries += int64(len(events))
			if opt.Progress != nil {
				opt.Progress(st.Entries, max(total, st.Entries))
			}
		}
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

// Truncate empties the projection tables (orders, items); the schema stays.
func (s *Store) Truncate(ctx context.Context) error {
	for _, table := range []string{"orders", "items"} {
		if _, err := s.db.ExecContext(ctx, "TRUNCATE TABLE "+table); err != nil {
			return fmt.Errorf("truncate %s: %w", table, err)
		}
	}
	return nil
}

// LiveConsumers returns the consumers of running projectors: those whose heartbeat (see
// Config.Heartbeat) has not expired, on any partition. A projector idle for hours is live; one
// that stopped is not (it removes its heartbeat), nor, after its heartbeat's TTL, one killed.
func LiveConsumers(ctx context.Context, l *ledger.Ledger) ([]string, error) {
	live, err := l.Alive(ctx)
	if err != nil {
		return nil, fmt.Errorf("live consumers: %w", err)
	}
	return live, nil
}
