package ledger

import (
	"context"
	"errors"
	"fmt"
)

// DeviationError names the first event of a draw that the ranks do not explain.
type DeviationError struct {
	StreamID, OrderID string
	What              string
}

func (e *DeviationError) Error() string {
	if e.OrderID == "" {
		return "draw deviates: " + e.What
	}
	return fmt.Sprintf("draw deviates at %s (order %s): %s", e.StreamID, e.OrderID, e.What)
}

// ErrDeviation matches every *DeviationError.
var ErrDeviation = errors.New("draw deviates from its ranks")

// Is reports whether target is ErrDeviation.
func (e *DeviationError) Is(target error) bool { return target == ErrDeviation }

// DrawCheck is what VerifyDraw found.
type DrawCheck struct {
	Entries, Winners, Waitlisted, Promoted, Lost int
	Units                                        int64
	// Finished is set when every entry has its outcome written.
	Finished bool
}

// VerifyDraw recomputes item's draw from the ledger read through source (nil: the stream):
// the seed must match the commitment of the item's stock events; the entries are ranked by
// HMAC-SHA256(seed, user_id); every won and waitlisted event must give its entry the outcome
// and rank that ranking gives; every promotion must take the lowest-ranked waiting entry, into
// units that were free; an entry is lost only while no winner still holds a reservation. The
// first event that breaks a rule is returned as a *DeviationError.
func (l *Ledger) VerifyDraw(ctx context.Context, item string, seed []byte, source EventSource) (DrawCheck, error) {
	if source == nil {
		source = l.StreamSource
	}
	if err := ValidateItemID(item); err != nil {
		return DrawCheck{}, err
	}
	p := l.keys.Partition(item)
	entries, commit, units, err := drawEntriesAndRule(ctx, source, p, item)
	if err != nil {
		return DrawCheck{}, err
	}
	if commit == "" {
		return DrawCheck{}, ErrNotDraw
	}
	if SeedCommitment(seed) != commit {
		return DrawCheck{}, ErrSeedMismatch
	}
	v := newDrawVerifier(seed, entries, units)
	err = source(ctx, p, func(e Event) error {
		if e.Malformed != nil || e.ItemID != item {
			return nil
		}
		if len(e.Orders) > 0 { // waitlisted (ranks from Rank) or lost
			for j, id := range e.Orders {
				one := e
				one.OrderID, one.Rank, one.Orders = id, e.Rank+int64(j), nil
				if err := v.step(one); err != nil {
					return err
				}
			}
			return nil
		}
		return v.step(e)
	})
	if v.first != nil {
		return v.check, v.first
	}
	if err != nil {
		return v.check, fmt.Errorf("read ledger: %w", err)
	}
	v.check.Finished = v.outcomes == len(entries)
	return v.check, nil
}

// drawEntriesAndRule reads item's draw entries, in ledger order, with the commitment and
// units of its last stock event before the draw began.
func drawEntriesAndRule(ctx context.Context, source EventSource, p int, item string) (entries []Entry, commit string, units int64, err error) {
	drawing := false
	err = source(ctx, p, func(e Event) error {
		if e.Malformed != nil || e.ItemID != item {
			return nil
		}
		switch {
		case e.Type == EventStock && !drawing:
			commit, units = e.DrawCommit, e.Stock
		case e.Type == EventOrder && e.Draw:
			entries = append(entries, Entry{OrderID: e.OrderID, UserID: e.UserID, RequestID: e.RequestID, Quantity: e.Quantity, StreamID: e.StreamID})
		case e.Type == EventWon || e.Type == EventWaitlisted:
			drawing = true
		}
		return nil
	})
	if err != nil {
		return nil, "", 0, fmt.Errorf("read ledger: %w", err)
	}
	return entries, commit, units, nil
}

// The states of an entry as drawVerifier follows it.
const (
	entryWaiting = iota + 1
	entryHolding
	entryPaid
	entryClosed
	entryLost
)

// drawVerifier replays a draw's outcome events against the ranks the seed gives.
type drawVerifier struct {
	entries  []Entry
	rank     map[string]int
	state    []uint8
	units    int64
	won      int
	held     int64 // units reserved or paid by winners
	reserved int   // winners still reserved
	head     int   // no entry before head is waiting
	outcomes int
	check    DrawCheck
	first    *DeviationError
}

func newDrawVerifier(seed []byte, entries []Entry, units int64) *drawVerifier {
	RankEntries(seed, entries)
	won := Winners(entries, units)
	v := &drawVerifier{entries: entries, rank: make(map[string]int, len(entries)), state: make([]uint8, len(entries)),
		units: units, won: won, head: won, check: DrawCheck{Entries: len(entries), Units: units}}
	for i, e := range entries {
		v.rank[e.OrderID] = i
	}
	return v
}

func (v *drawVerifier) dev(e Event, format string, args ...any) error {
	v.first = &DeviationError{StreamID: e.StreamID, OrderID: e.OrderID, What: fmt.Sprintf(format, args...)}
	return v.first
}

// step checks one event of the item against the ranks and the units held.
func (v *drawVerifier) step(e Event) error {
	i, ok := v.rank[e.OrderID]
	switch e.Type {
	case EventWon, EventWaitlisted, EventPromoted, EventLost:
		if !ok {
			return v.dev(e, "%s event of an order that is not an entry", e.Type)
		}
	case EventPaid, EventCancelled, EventExpired:
		if !ok {
			return nil
		}
	default:
		return nil
	}
	switch e.Type {
	case EventWon, EventWaitlisted:
		return v.outcome(e, i)
	case EventPromoted:
		return v.promoted(e, i)
	case EventLost:
		switch {
		case v.state[i] != entryWaiting:
			return v.dev(e, "lost event of an entry that was not waiting")
		case v.reserved > 0:
			return v.dev(e, "lost while %d winners still held reservations", v.reserved)
		}
		v.state[i] = entryLost
		v.check.Lost++
	case EventPaid:
		if v.state[i] == entryHolding {
			v.state[i], v.reserved = entryPaid, v.reserved-1
		}
	case EventCancelled, EventExpired:
		if v.state[i] == entryHolding {
			v.state[i], v.held, v.reserved = entryClosed, v.held-v.entries[i].Quantity, v.reserved-1
		}
	}
	return nil
}

// outcome checks a won or waitlisted event of the entry ranked i.
func (v *drawVerifier) outcome(e Event, i int) error {
	want := EventWaitlisted
	if i < v.won {
		want = EventWon
	}
	switch {
	case v.state[i] != 0:
		return v.dev(e, "second draw outcome of the entry of %q", v.entries[i].UserID)
	case e.Type != want:
		return v.dev(e, "%s, but rank %d of %d entries with %d units %s", e.Type, i, len(v.entries), v.units, want)
	case e.Rank != int64(i):
		return v.dev(e, "recorded rank %d, but the seed ranks %q at %d", e.Rank, v.entries[i].UserID, i)
	}
	v.outcomes++
	if e.Type == EventWon {
		v.state[i], v.held, v.reserved = entryHolding, v.held+v.entries[i].Quantity, v.reserved+1
		v.check.Winners++
	} else {
		v.state[i] = entryWaiting
		v.check.Waitlisted++
	}
	return nil
}

// promoted checks a promotion of the entry ranked i: after the draw, the first waiting
// entry, into units free.
func (v *drawVerifier) promoted(e Event, i int) error {
	for v.head < len(v.entries) && v.state[v.head] != entryWaiting {
		v.head++
	}
	switch {
	case v.outcomes < len(v.entries):
		return v.dev(e, "promotion before the draw was finished")
	case v.state[i] != entryWaiting:
		return v.dev(e, "promotion of an entry that was not waiting")
	case i != v.head:
		return v.dev(e, "promotion of rank %d while rank %d (%s) was waiting first", i, v.head, v.entries[v.head].OrderID)
	case v.held+v.entries[i].Quantity > v.units:
		return v.dev(e, "promotion of %d units while %d of %d were held", v.entries[i].Quantity, v.held, v.units)
	}
	v.state[i], v.held, v.reserved = entryHolding, v.held+v.entries[i].Quantity, v.reserved+1
	v.check.Promoted++
	return nil
}
