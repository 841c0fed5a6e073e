package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// Defaults of RetainConfig.
const (
	DefaultRetain         = ledger.DefaultRetain
	DefaultTrimInterval   = 5 * time.Second
	DefaultTrimMaxEntries = 100_000
)

// CheckpointArchive keeps every checkpoint beside the archived entries (the archive package
// implements it), so that a full refold of the archive can check each one.
type CheckpointArchive interface {
	PutCheckpoint(ctx context.Context, partition int, id string, data []byte) error
}

// RetainConfig tunes a Retainer.
type RetainConfig struct {
	// Retain is how long an entry stays in Redis at least: only entries older than it (and
	// archived and projected) are trimmed; a sale window that ended longer ago than it closes
	// its item.
	Retain time.Duration
	// Interval is the time between two rounds.
	Interval time.Duration
	// MaxEntries bounds the entries one round folds and trims per partition.
	MaxEntries int64
	// Archive, when set, receives every checkpoint before the trim it allows.
	Archive CheckpointArchive
}

func (c *RetainConfig) setDefaults() {
	if c.Interval == 0 {
		c.Interval = DefaultTrimInterval
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultTrimMaxEntries
	}
}

// Validate reports a setting that cannot work.
func (c RetainConfig) Validate() error {
	if c.Retain <= 0 {
		return fmt.Errorf("retain %s: want more than 0", c.Retain)
	}
	if c.Interval <= 0 || c.MaxEntries <= 0 {
		return fmt.Errorf("trim interval %s and max entries %d: want more than 0", c.Interval, c.MaxEntries)
	}
	return nil
}

// Retainer keeps the ledger bounded by live work. Each round, per partition, it folds the
// entries up to the safe point (ledger.RetainState: archived, projected and older than the
// retention window) into a new checkpoint, stores it (archive first, then Redis) and trims
// them in the same script call; it closes items whose sale window ended more than the
// retention ago, and cleans closed items once their sale is settled (ledger.Cleanup). Any
// number may run: a trim names the checkpoint it folded from, and a loser's round does nothing.
type Retainer struct {
	ledger *ledger.Ledger
	cfg    RetainConfig
	log    *slog.Logger
}

// NewRetainer returns a Retainer of l.
func NewRetainer(l *ledger.Ledger, cfg RetainConfig, log *slog.Logger) (*Retainer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Retainer{ledger: l, cfg: cfg, log: log.With("component", "retainer")}, nil
}

// Run runs a round every Interval until ctx ends. A failed round is logged and the next one
// tries again.
func (r *Retainer) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if err := r.Round(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("retention round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Round trims, closes and cleans every partition once.
func (r *Retainer) Round(ctx context.Context) error {
	var errs []error
	for p := range r.ledger.Keys().Partitions() {
		st, err := r.ledger.RetainState(ctx, p, r.cfg.Retain)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := r.trim(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("trim partition %d: %w", p, err))
		}
		if err := r.closeAndClean(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("clean partition %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// trim folds partition st.Partition's entries after its checkpoint up to the safe point (at
// most MaxEntries) into a new checkpoint and trims them. It returns the entries trimmed.
func (r *Retainer) trim(ctx context.Context, st ledger.RetainState) (int64, error) {
	p := st.Partition
	if st.Safe == "" || ledger.CompareIDs(st.Safe, st.Checkpoint) <= 0 {
		return 0, nil
	}
	c, err := r.ledger.LoadCheckpoint(ctx, p)
	if err != nil {
		return 0, err
	}
	if c.ID != st.Checkpoint {
		return 0, nil // another trimmer went first; the next round reads again
	}
	pa := fromCheckpoint(c)
	keys := r.ledger.Keys()
	last := ""
	for n := int64(0); n < r.cfg.MaxEntries; {
		after := c.ID
		if last != "" {
			after = last
		}
		events, err := r.ledger.RangeTo(ctx, p, after, st.Safe, min(1000, r.cfg.MaxEntries-n))
		if err != nil {
			return 0, err
		}
		if len(events) == 0 {
			break
		}
		for entry := range ledger.ByEntry(events) {
			pa.applyEntry(keys, p, entry)
			n++
		}
		last = events[len(events)-1].StreamID
	}
	if last == "" {
		return 0, nil
	}
	next := pa.checkpointAt(p, last)
	data, err := json.Marshal(next)
	if err != nil {
		return 0, fmt.Errorf("encode checkpoint: %w", err)
	}
	if r.cfg.Archive != nil {
		if err := r.cfg.Archive.PutCheckpoint(ctx, p, last, data); err != nil {
			return 0, fmt.Errorf("archive checkpoint %d/%s: %w", p, last, err)
		}
	}
	n, err := r.ledger.Trim(ctx, next, c.ID, data)
	if errors.Is(err, ledger.ErrCheckpointMoved) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	r.log.Debug("trimmed", "partition", p, "through", last, "entries", n)
	return n, nil
}

// closeAndClean closes the items of partition st.Partition whose sale window ended more than
// the retention ago, and cleans the closed ones whose sale is settled.
func (r *Retainer) closeAndClean(ctx context.Context, st ledger.RetainState) error {
	items, err := r.ledger.PartitionRules(ctx, st.Partition)
	if err != nil {
		return err
	}
	var errs []error
	for _, it := range items {
		if it.CloseID == "" && it.EndMS > 0 && st.Now.Sub(time.UnixMilli(it.EndMS)) > r.cfg.Retain {
			id, err := r.ledger.CloseItem(ctx, it.ItemID)
			if err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", it.ItemID, err))
				continue
			}
			r.log.Info("closed an item whose sale ended", "item", it.ItemID, "ended", time.UnixMilli(it.EndMS))
			it.CloseID = id
		}
		if it.CloseID == "" || it.Cleaned {
			continue
		}
		done, err := r.ledger.Cleanup(ctx, it.ItemID, st.Projected)
		if err != nil {
			errs = append(errs, fmt.Errorf("clean %s: %w", it.ItemID, err))
			continue
		}
		if done {
			r.log.Info("cleaned a closed item", "item", it.ItemID)
		}
	}
	return errors.Join(errs...)
}
