package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// TailWinners builds the winner index and keeps it current until ctx is done (it returns nil
// then): it reads every partition stream from its first retained entry with XREAD, then waits
// for new entries, each read blocking at most a quarter of the sold-out lease. On an error
// (Redis away, restarting) the partitions stop answering locally; when Redis answers again the
// tail resumes after its last entry if that entry is still there and nothing after it was
// deleted, and rebuilds the partition from its first entry otherwise. Entries deleted before
// the tail read them (found by a check of XINFO STREAM every 10 s, and before a lapsed lease
// is renewed) also rebuild the partition. log may be nil.
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

// tail checks the position of each partition of all (resume or rebuild) and reads until an
// error; read reports whether any read succeeded.
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
	got := make([]int, len(ps))
	checked := time.Now()
	for {
		if time.Since(checked) >= winnerCheck {
			if err := l.checkDeletes(ctx, ps); err != nil {
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
		sent := w.now()
		res, err := l.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: winnerCount, Block: w.block}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return read, redisErr("tail ledger", err)
		}
		read = true
		l.applyRead(ps, streams[:len(ps)], res, got)
		// A lease that lapsed (the tail was held up: Redis slow, this process paused) is
		// renewed only after a check that nothing unread was deleted meanwhile.
		lapsed := false
		for i, p := range ps {
			lapsed = lapsed || got[i] < winnerCount && w.now() >= w.parts[p].leaseUntil.Load()
		}
		if lapsed {
			if err := l.checkDeletes(ctx, ps); err != nil {
				return read, err
			}
			checked = time.Now()
		}
		w.renew(ps, got, sent)
		if lingers(got) {
			select {
			case <-ctx.Done():
			case <-time.After(min(winnerLinger, w.block)):
			}
		}
		if ctx.Err() != nil {
			return read, ctx.Err()
		}
	}
}

// lingers reports whether the tail waits before its next read, after a read that returned got
// entries per partition: some new entries, and no full page (which says more are waiting).
func lingers(got []int) bool {
	some := false
	for _, n := range got {
		if n >= winnerCount {
			return false
		}
		some = some || n > 0
	}
	return some
}

// applyRead indexes the entries of one XREAD reply res over partitions ps (whose stream keys
// are keys), and records in got how many entries each partition's stream returned.
func (l *Ledger) applyRead(ps []int, keys []string, res []redis.XStream, got []int) {
	w := l.winners
	clear(got)
	for _, s := range res {
		i := slices.Index(keys, s.Stream)
		if i < 0 {
			continue
		}
		p := ps[i]
		got[i] = len(s.Messages)
		events := make([]Event, 0, len(s.Messages))
		for _, m := range s.Messages {
			events = append(events, l.decodeOrMark(p, m)...)
		}
		part := w.parts[p]
		part.mu.Lock()
		w.apply(part, p, l.keys, events)
		part.mu.Unlock()
	}
}

// renew marks partitions ps synced after a read sent at sent that returned got entries each,
// and renews the lease of each whose read reached the end of its stream.
func (w *winners) renew(ps []int, got []int, sent int64) {
	for i, p := range ps {
		part := w.parts[p]
		part.mu.Lock()
		part.synced = !part.broken
		// A read that returned a full batch may have left entries behind: it renews
		// nothing. One that reached the end has read every entry written before it was sent.
		if part.synced && got[i] < winnerCount {
			part.leaseUntil.Store(sent + int64(w.lease))
		}
		part.mu.Unlock()
	}
}

// resumable checks whether partition p's tail can go on after its position: the stream still
// holds the entry at the position and nothing after it was deleted (see deletedUpTo). Otherwise the partition is rebuilt from its first
// retained entry. A stream on Redis before 7.0 (no max-deleted-entry-id) is not indexed
// (false): a deletion could not be told.
func (l *Ledger) resumable(ctx context.Context, p int, part *winnerPart) (bool, error) {
	info, err := l.rdb.XInfoStream(ctx, l.keys.Events(p)).Result()
	switch {
	case err != nil && isNoGroup(err):
		// No stream yet: nothing to index, read from the start once it appears.
		l.winners.reset(part, streamPos{})
		return true, nil
	case err != nil:
		return false, redisErr("tail ledger: stream info", err)
	}
	del, known := deletedUpTo(info)
	if !known {
		l.winners.reset(part, streamPos{})
		return false, nil
	}
	part.mu.RLock()
	pos := part.pos
	part.mu.RUnlock()
	if pos == (streamPos{}) || !del.less(pos) {
		l.winners.reset(part, del)
		return true, nil
	}
	msgs, err := l.rdb.XRangeN(ctx, l.keys.Events(p), pos.String(), pos.String(), 1).Result()
	if err != nil {
		return false, redisErr("tail ledger: check position", err)
	}
	if len(msgs) == 0 {
		l.winners.reset(part, del) // the ledger is not the one read (lost, replaced): rebuild
		return true, nil
	}
	part.mu.Lock()
	part.deleted, part.checkedPos = del, pos
	part.mu.Unlock()
	return true, nil
}

// deletedUpTo returns a bound of the entries ever deleted from the stream: every deleted
// entry is at or before it; zero when nothing was ever deleted (entries-added is the length).
// XDEL moves max-deleted-entry-id; XTRIM does not, but it moves the first entry, before which
// everything is gone. known is false on Redis before 7.0, whose XINFO STREAM tells neither.
func deletedUpTo(info *redis.XInfoStream) (bound streamPos, known bool) {
	if info.MaxDeletedEntryID == "" {
		return streamPos{}, false
	}
	if info.EntriesAdded == info.Length {
		return streamPos{}, true
	}
	bound, _ = parsePos(info.MaxDeletedEntryID)
	first := info.FirstEntry.ID
	if first == "" {
		first = info.LastGeneratedID // empty: every entry was deleted
	}
	if f, ok := parsePos(first); ok && bound.less(f) {
		bound = f
	}
	return bound, true
}

// errTrimmedUnread: entries the tail had not read were deleted from a stream it reads.
var errTrimmedUnread = errors.New("ledger entries were deleted before the winner tail read them")

// checkDeletes makes sure that no entry the tail had not read was deleted from the partitions
// ps since the last check (one pipeline of XINFO STREAM). The bound of deleted entries (see
// deletedUpTo) only grows; if it grew to or past the position the tail had when the last check
// was sent, an entry may have gone unread: the partition is reset (rebuilt from its first entry) and the
// error returned. Trimming entries the tail has read (the ledger's retention) is fine.
func (l *Ledger) checkDeletes(ctx context.Context, ps []int) error {
	w := l.winners
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.XInfoStreamCmd, len(ps))
	sent := make([]streamPos, len(ps))
	for i, p := range ps {
		part := w.parts[p]
		part.mu.RLock()
		sent[i] = part.pos
		part.mu.RUnlock()
		cmds[i] = pipe.XInfoStream(ctx, l.keys.Events(p))
	}
	pipe.Exec(ctx) // errors are read per command
	var gap error
	for i, c := range cmds {
		info, err := c.Result()
		if err != nil {
			if isNoGroup(err) {
				continue // not created yet
			}
			return redisErr("tail ledger: stream info", err)
		}
		del, _ := deletedUpTo(info)
		part := w.parts[ps[i]]
		part.mu.Lock()
		grew := part.deleted.less(del) && !del.less(part.checkedPos)
		part.deleted, part.checkedPos = del, sent[i]
		part.mu.Unlock()
		if grew {
			w.reset(part, del)
			gap = fmt.Errorf("tail ledger partition %d: %w", ps[i], errTrimmedUnread)
		}
	}
	return gap
}
