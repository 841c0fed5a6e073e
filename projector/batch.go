package projector

import (
	"context"
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
// then the restock of orders that failed for good, then XACK of the rest. Transient failures
// are retried until they pass or ctx ends; a batch in hand is never cut in the middle of a
// step (the steps themselves do not watch ctx), and whatever was not acknowledged when ctx
// ends stays pending for the next run.
func (p *Projector) handle(ctx context.Context, part int, consumer string, events []ledger.Event) {
	start := time.Now()
	work := context.WithoutCancel(ctx)
	var good []ledger.Event
	var cancels []cancellation
	var skipped []ledger.Event
	for _, e := range events {
		switch {
		case e.Malformed == nil:
			good = append(good, e)
		case e.Type == ledger.EventOrder && e.Quantity > 0 && e.ItemID != "":
			cancels = append(cancels, cancellation{e, "malformed order entry: " + e.Malformed.Error()})
		default:
			skipped = append(skipped, e)
		}
	}

	ids := streamIDs(events)
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
		return
	}

	cancelled := map[string]bool{}
	for _, c := range cancels {
		err := p.retry(ctx, "restock", func() error {
			done, err := p.ledger.Restock(work, c.order, p.cfg.Group, c.reason)
			if err == nil && done {
				p.metrics.restocks.Inc()
				p.log.Warn("order cancelled and restocked", "order_id", c.order.OrderID, "item_id", c.order.ItemID, "quantity", c.order.Quantity, "reason", c.reason)
			}
			return err
		})
		if err != nil {
			return
		}
		cancelled[c.order.StreamID] = true
	}
	for _, e := range skipped {
		p.metrics.malformed.Inc()
		p.log.Error("skipping malformed ledger entry", "partition", part, "id", e.StreamID, "err", e.Malformed)
	}

	ack := make([]string, 0, len(events))
	for _, e := range events {
		if !cancelled[e.StreamID] {
			ack = append(ack, e.StreamID)
		}
	}
	if err := p.retry(ctx, "ack", func() error { return p.ledger.Ack(work, part, p.cfg.Group, ack...) }); err != nil {
		return
	}
	for _, e := range good {
		p.metrics.events.WithLabelValues(string(e.Type)).Inc()
	}
	p.metrics.batchSize.Observe(float64(len(events)))
	p.metrics.batchSeconds.Observe(time.Since(start).Seconds())
}

// apply writes events in one transaction. When MySQL refuses the batch for its data (see
// Permanent), it writes the events one by one to find the culprits: orders among them are
// returned for cancellation, other events are skipped with an error log.
func (p *Projector) apply(ctx context.Context, events []ledger.Event) ([]cancellation, error) {
	if len(events) == 0 {
		return nil, nil
	}
	conflicts, err := p.write(ctx, events)
	if err == nil {
		return conflicts, nil
	}
	if !Permanent(err) || len(events) == 1 && events[0].Type != ledger.EventOrder {
		if Permanent(err) {
			p.metrics.malformed.Inc()
			p.log.Error("skipping entry MySQL refuses", "id", events[0].StreamID, "err", err)
			return nil, nil
		}
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

func streamIDs(events []ledger.Event) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.StreamID
	}
	return ids
}
