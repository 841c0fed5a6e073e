package projector

import (
	"context"
	"errors"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// ReasonRequestConflict is the reason recorded (in the restock event and the cancelled row)
// for an order cancelled because its (item_id, request_id) already holds another live order in
// MySQL. Audit checks that such a holder exists, byte for byte.
const ReasonRequestConflict = "request_id already holds another order in MySQL"

// cancellation is an order that can never be projected, and why.
type cancellation struct {
	order  ledger.Event
	reason string
}

// handle projects one batch of entries read (or claimed) by consumer: one MySQL transaction,
// then the restock of orders that failed for good, then XACK of every entry of the batch,
// each once (an `orders` entry holds several orders, and is acknowledged only once every one
// of them is projected or restocked: a crash before leaves it pending, and its orders are
// handled again, which changes nothing that was done). An entry that can be neither projected
// nor restocked (garbage, an item of another partition) is recorded as dead and acknowledged
// with it (Ledger.MarkDead), so that it never blocks the entries behind it. Transient failures
// are retried until they pass or ctx ends; a batch in hand is never cut in the middle of a
// step (the steps themselves do not watch ctx), and whatever was not acknowledged when ctx
// ends stays pending for the next run. It returns the number of entries in the batch.
func (p *Projector) handle(ctx context.Context, part int, consumer string, events []ledger.Event) (entries int) {
	start := time.Now()
	work := context.WithoutCancel(ctx)
	var good []ledger.Event
	var cancels []cancellation
	for _, e := range events {
		if e.Malformed == nil {
			good = append(good, e)
		} else {
			cancels = append(cancels, cancellation{e, "malformed entry: " + e.Malformed.Error()})
		}
	}

	ids := entryIDs(events, nil)
	entries = len(ids)
	touched := time.Now()
	err := p.retry(ctx, "write", func() error {
		if time.Since(touched) > p.cfg.MinIdle/3 {
			// Still ours: keep other consumers' claim loops off these entries.
			if err := p.ledger.Touch(work, part, p.cfg.Group, consumer, ids...); err != nil {
				return err
			}
			touched = time.Now()
		}
		failed, err := p.apply(work, good)
		if err == nil {
			cancels = append(cancels, failed...)
		}
		return err
	})
	if err != nil {
		return entries
	}
	dead, ok := p.restock(ctx, work, part, cancels)
	if !ok {
		return entries
	}
	ack := entryIDs(events, dead)
	if err := p.retry(ctx, "ack", func() error { return p.ledger.Ack(work, part, p.cfg.Group, ack...) }); err != nil {
		return entries
	}
	for _, e := range good {
		p.metrics.events.WithLabelValues(string(e.Type)).Inc()
	}
	p.metrics.batchSize.Observe(float64(len(ids)))
	p.metrics.batchSeconds.Observe(time.Since(start).Seconds())
	return entries
}

// restock restocks the cancelled orders, then records as dead (and acknowledges) the entries
// of those that can never be restocked. Dead entries are marked only after every restock of
// the batch: another order of the same `orders` entry may still have to be restocked, and
// would be lost once its entry is acknowledged. It returns the dead entries' IDs; ok is false
// when ctx ended first.
func (p *Projector) restock(ctx, work context.Context, part int, cancels []cancellation) (dead map[string]bool, ok bool) {
	var never []cancellation
	for _, c := range cancels {
		var invalid error
		err := p.retry(ctx, "restock", func() error {
			done, err := p.ledger.Restock(work, c.order, c.reason)
			if errors.Is(err, ledger.ErrInvalid) {
				invalid = err
				return nil
			}
			if err == nil && done {
				p.metrics.restocks.Inc()
				p.log.Warn("order cancelled and restocked", "order_id", c.order.OrderID, "item_id", c.order.ItemID, "quantity", c.order.Quantity, "reason", c.reason)
			}
			return err
		})
		if err != nil {
			return nil, false
		}
		if invalid != nil {
			never = append(never, cancellation{c.order, c.reason + "; " + invalid.Error()})
		}
	}
	dead = map[string]bool{}
	for _, c := range never {
		if err := p.retry(ctx, "mark dead", func() error { return p.ledger.MarkDead(work, c.order, p.cfg.Group, c.reason) }); err != nil {
			return nil, false
		}
		p.metrics.malformed.Inc()
		p.log.Error("dead ledger entry acknowledged: it can be neither projected nor restocked", "partition", part, "id", c.order.StreamID, "reason", c.reason)
		dead[c.order.StreamID] = true
	}
	return dead, true
}

// apply writes events in one transaction. When MySQL refuses the batch for its data (see
// Permanent), it writes the events one by one to find the culprits and returns them for
// cancellation (an event that is not an order cannot be restocked, and ends up dead).
func (p *Projector) apply(ctx context.Context, events []ledger.Event) ([]cancellation, error) {
	if len(events) == 0 {
		return nil, nil
	}
	conflicts, err := p.write(ctx, events)
	if err == nil {
		return conflicts, nil
	}
	if !Permanent(err) {
		return nil, err
	}
	if len(events) == 1 {
		return []cancellation{{events[0], "refused by MySQL: " + err.Error()}}, nil
	}
	var all []cancellation
	for i := range events {
		c, err := p.apply(ctx, events[i:i+1])
		if err != nil {
			return nil, err
		}
		all = append(all, c...)
	}
	return all, nil
}

// write is one Store.Apply within the write timeout; conflicting orders become cancellations.
func (p *Projector) write(ctx context.Context, events []ledger.Event) ([]cancellation, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
	defer cancel()
	conflicts, err := p.store.Apply(ctx, events)
	if err != nil {
		return nil, err
	}
	out := make([]cancellation, len(conflicts))
	for i, e := range conflicts {
		out[i] = cancellation{e, ReasonRequestConflict}
	}
	return out, nil
}

// entryIDs returns the stream IDs of the entries of events, each once (the orders of an
// `orders` entry share it), in stream order, leaving out those in skip.
func entryIDs(events []ledger.Event, skip map[string]bool) []string {
	ids := make([]string, 0, len(events))
	seen := make(map[string]bool, len(events))
	for _, e := range events {
		if !seen[e.StreamID] && !skip[e.StreamID] {
			ids = append(ids, e.StreamID)
		}
		seen[e.StreamID] = true
	}
	return ids
}
