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
	var entries []Entry
	var commit string
	var units int64
	drawing := false
	err := source(ctx, p, func(e Event) error {
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
		return DrawCheck{}, fmt.Errorf("read ledger: %w", err)
	}
	if commit == "" {
		return DrawCheck{}, ErrNotDraw
	}
	if SeedCommitment(seed) != commit {
		return DrawCheck{}, ErrSeedMismatch
	}
	RankEntries(seed, entries)
	won := Winners(entries, units)
	check := DrawCheck{Entries: len(entries), Units: units}
	rank := make(map[string]int, len(entries))
	for i, e := range entries {
		rank[e.OrderID] = i
	}
	const (
		waiting = iota + 1
		holding
		paid
		closed
		lost
	)
	state := make([]uint8, len(entries))
	var held int64   // units reserved or paid by winners
	var reserved int // winners still reserved
	head := won      // no entry before head is waiting
	outcomes := 0
	var first *DeviationError
	dev := func(e Event, format string, args ...any) error {
		first = &DeviationError{StreamID: e.StreamID, OrderID: e.OrderID, What: fmt.Sprintf(format, args...)}
		return first
	}
	step := func(e Event) error {
		i, ok := rank[e.OrderID]
		switch e.Type {
		case EventWon, EventWaitlisted, EventPromoted, EventLost:
			if !ok {
				return dev(e, "%s event of an order that is not an entry", e.Type)
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
			want := EventWaitlisted
			if i < won {
				want = EventWon
			}
			switch {
			case state[i] != 0:
				return dev(e, "second draw outcome of the entry of %q", entries[i].UserID)
			case e.Type != want:
				return dev(e, "%s, but rank %d of %d entries with %d units %s", e.Type, i, len(entries), units, want)
			case e.Rank != int64(i):
				return dev(e, "recorded rank %d, but the seed ranks %q at %d", e.Rank, entries[i].UserID, i)
			}
			outcomes++
			if e.Type == EventWon {
				state[i], held, reserved = holding, held+entries[i].Quantity, reserved+1
				check.Winners++
			} else {
				state[i] = waiting
				check.Waitlisted++
			}
		case EventPromoted:
			for head < len(entries) && state[head] != waiting {
				head++
			}
			switch {
			case outcomes < len(entries):
				return dev(e, "promotion before the draw was finished")
			case state[i] != waiting:
				return dev(e, "promotion of an entry that was not waiting")
			case i != head:
				return dev(e, "promotion of rank %d while rank %d (%s) was waiting first", i, head, entries[head].OrderID)
			case held+entries[i].Quantity > units:
				return dev(e, "promotion of %d units while %d of %d were held", entries[i].Quantity, held, units)
			}
			state[i], held, reserved = holding, held+entries[i].Quantity, reserved+1
			check.Promoted++
		case EventLost:
			switch {
			case state[i] != waiting:
				return dev(e, "lost event of an entry that was not waiting")
			case reserved > 0:
				return dev(e, "lost while %d winners still held reservations", reserved)
			}
			state[i] = lost
			check.Lost++
		case EventPaid:
			if state[i] == holding {
				state[i], reserved = paid, reserved-1
			}
		case EventCancelled, EventExpired:
			if state[i] == holding {
				state[i], held, reserved = closed, held-entries[i].Quantity, reserved-1
			}
		}
		return nil
	}
	err = source(ctx, p, func(e Event) error {
		if e.Malformed != nil || e.ItemID != item {
			return nil
		}
		if e.Type == EventWaitlisted {
			for j, id := range e.Orders {
				one := e
				one.OrderID, one.Rank, one.Orders = id, e.Rank+int64(j), nil
				if err := step(one); err != nil {
					return err
				}
			}
			return nil
		}
		return step(e)
	})
	if first != nil {
		return check, first
	}
	if err != nil {
		return check, fmt.Errorf("read ledger: %w", err)
	}
	check.Finished = outcomes == len(entries)
	return check, nil
}
