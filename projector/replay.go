package projector

import (
	"context"
	"fmt"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// Fresh empties the projection tables first; otherwise replay fills in what is missing.
	Fresh bool
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

// LiveConsumers returns the consumers of group that read from any partition within the last
// `within`: projectors that are running now.
func LiveConsumers(ctx context.Context, l *ledger.Ledger, group string, within time.Duration) ([]string, error) {
	seen := map[string]bool{}
	var live []string
	for p := range l.Keys().Partitions() {
		cs, err := l.Consumers(ctx, p, group)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if c.Idle < within && !seen[c.Name] {
				seen[c.Name] = true
				live = append(live, c.Name)
			}
		}
	}
	return live, nil
}
