package projector

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/ledger/archive"
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
	// Archive, if set, is read first: every partition is replayed from its archived entries,
	// then from the stream after the last of them. Without it, replay reads the stream only.
	// Either way a partition whose stream lost entries that the archive does not hold (trimmed
	// past the archive, or without one) is refused before anything of it is written.
	Archive *archive.Archive
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
// entry (in the archive, with opt.Archive, then in the stream), through the same idempotent Store.Apply the projector uses: running it twice, or
// while projectors run, changes nothing more. Without opt.Fresh it ends with Store.Recount, so
// that item_totals agree with the rows again after rows were deleted or changed by hand. It never acknowledges or restocks: orders that
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
		pg := pager{st: &st, total: total, opt: opt, store: store, p: p}
		after := "0-0"
		if opt.Archive != nil {
			err := opt.Archive.Read(ctx, p, "", func(e archive.Entry) error {
				after = e.ID
				return pg.add(ctx, l.DecodeEntry(p, e.ID, e.Fields))
			})
			if err != nil {
				return st, fmt.Errorf("replay partition %d from the archive: %w", p, err)
			}
		}
		if first, err := l.TrimmedPast(ctx, p, after); err != nil {
			return st, err
		} else if first != "" {
			where := "the archive ends at " + after
			if opt.Archive == nil {
				where = "no archive was given"
			}
			return st, fmt.Errorf("replay partition %d: entries were trimmed or deleted from the stream, which now starts at %s, and %s", p, first, where)
		}
		for {
			events, err := l.Range(ctx, p, after, opt.PageSize)
			if err != nil {
				return st, err
			}
			if len(events) == 0 {
				break
			}
			after = events[len(events)-1].StreamID
			for entry := range ledger.ByEntry(events) {
				if err := pg.add(ctx, entry); err != nil {
					return st, err
				}
			}
		}
		if err := pg.flush(ctx); err != nil {
			return st, err
		}
	}
	if !opt.Fresh {
		// Rows deleted or changed by hand, then written again, put item_totals out of step.
		if err := store.Recount(ctx); err != nil {
			return st, err
		}
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

// pager writes one partition's events in pages of PageSize entries (all the events of an
// entry in one page), whether they come from the archive or the stream, so that the
// transactions are the same as from an untrimmed stream.
type pager struct {
	st    *ReplayStats
	total int64
	opt   ReplayOptions
	store *Store
	p     int
	page  []ledger.Event
	// entries counts the entries of page.
	entries int64
}

// add adds the events of one entry to the page.
func (pg *pager) add(ctx context.Context, entry []ledger.Event) error {
	pg.page = append(pg.page, entry...)
	pg.entries++
	if pg.entries >= pg.opt.PageSize {
		return pg.flush(ctx)
	}
	return nil
}

func (pg *pager) flush(ctx context.Context) error {
	if len(pg.page) == 0 {
		return nil
	}
	good := pg.page[:0:0]
	for _, e := range pg.page {
		switch {
		case e.Malformed != nil:
			pg.st.Malformed++
			continue
		case e.Type == ledger.EventOrder:
			pg.st.Orders++
		case e.Type == ledger.EventRestock:
			pg.st.Restocks++
		case e.Type == ledger.EventStock:
			pg.st.Stocks++
		}
		good = append(good, e)
	}
	last := pg.page[len(pg.page)-1].StreamID
	if _, err := pg.store.Apply(ctx, good); err != nil {
		return fmt.Errorf("replay partition %d at %s: %w", pg.p, last, err)
	}
	pg.st.Entries += pg.entries
	pg.page, pg.entries = pg.page[:0], 0
	if pg.opt.Progress != nil {
		pg.opt.Progress(pg.st.Entries, max(pg.total, pg.st.Entries))
	}
	return nil
}

// Truncate empties the projection tables (orders, items, item_totals); the schema stays.
func (s *Store) Truncate(ctx context.Context) error {
	for _, table := range []string{"orders", "items", "item_totals"} {
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
