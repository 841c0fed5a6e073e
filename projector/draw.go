package projector

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	sq "github.com/Masterminds/squirrel"

	"github.com/flashsale/flashsale/ledger"
)

// drawSteps are the draw events' transitions, in the order applyDraws applies them: an entry
// is waitlisted or won from registered, then promoted or lost from waitlisted, so applying
// one batch's events by type keeps each order's own sequence.
var drawSteps = []struct {
	typ      ledger.EventType
	from, to string
}{
	{ledger.EventWaitlisted, ledger.StatusRegistered, ledger.StatusWaitlisted},
	{ledger.EventWon, ledger.StatusRegistered, ledger.StatusReserved},
	{ledger.EventPromoted, ledger.StatusWaitlisted, ledger.StatusReserved},
	{ledger.EventLost, ledger.StatusWaitlisted, ledger.StatusLost},
}

// isDrawEvent reports whether e is a won, waitlisted, promoted or lost event.
func isDrawEvent(e ledger.Event) bool {
	switch e.Type {
	case ledger.EventWon, ledger.EventWaitlisted, ledger.EventPromoted, ledger.EventLost:
		return true
	}
	return false
}

// applyDraws applies won, waitlisted, promoted and lost events: each writes the whole row if
// the entry's order event has not been applied yet, and otherwise moves the row on only from
// the status the event expects, so that a redelivered event changes nothing.
func applyDraws(ctx context.Context, tx *sql.Tx, draws []ledger.Event, now time.Time) error {
	for _, step := range drawSteps {
		var these []ledger.Event
		for _, e := range draws {
			if e.Type == step.typ {
				these = append(these, e)
			}
		}
		these, listed := splitListed(these)
		if err := moveListed(ctx, tx, listed, step.from, step.to, now); err != nil {
			return fmt.Errorf("apply %s events: %w", step.typ, err)
		}
		for chunk := range chunks(these) {
			q := sq.Insert("orders").Columns("order_id", "request_id", "user_id", "item_id", "quantity", "status", "pay_by", "created_at", "updated_at")
			for _, e := range chunk {
				q = q.Values(e.OrderID, e.RequestID, e.UserID, e.ItemID, e.Quantity, step.to, nullTime(e.PayBy), e.Placed.UTC(), now)
			}
			moves := fmt.Sprintf("status = '%s' AND order_id = VALUES(order_id)", step.from)
			q = q.Suffix(`ON DUPLICATE KEY UPDATE
				pay_by = IF(` + moves + `, VALUES(pay_by), pay_by),
				updated_at = IF(` + moves + `, VALUES(updated_at), updated_at),
				status = IF(` + moves + `, VALUES(status), status)`)
			if err := exec(ctx, tx, q); err != nil {
				return fmt.Errorf("apply %s events: %w", step.typ, err)
			}
		}
	}
	return nil
}

// foldDraw applies one draw entry or draw event to the audit of its item: an entry holds no
// units; a won or promoted entry is reserved like an order under a pay-within rule. It checks
// that each event finds the entry in the state it moves it from, and that the units reserved
// plus paid never exceed the units put on sale.
func foldDraw(rep *AuditReport, it *ItemAudit, e ledger.Event, orders map[string]*ledgerOrder, checkpoint string) {
	if len(e.Orders) > 0 { // waitlisted or lost: one event for several entries
		for _, id := range e.Orders {
			one := e
			one.OrderID, one.Orders = id, nil
			foldDraw(rep, it, one, orders, checkpoint)
		}
		return
	}
	if e.Type == ledger.EventOrder {
		orders[e.OrderID] = &ledgerOrder{item: e.ItemID, request: e.RequestID, quantity: e.Quantity, state: ledger.StateRegistered}
		return
	}
	o := orders[e.OrderID]
	if o == nil {
		rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, string(e.Type) + " event of an entry the ledger does not hold"})
		return
	}
	from, to := ledger.StateRegistered, ledger.StateReserved
	switch e.Type {
	case ledger.EventWaitlisted:
		to = ledger.StateWaitlisted
	case ledger.EventPromoted:
		from = ledger.StateWaitlisted
	case ledger.EventLost:
		from, to = ledger.StateWaitlisted, ledger.StateLost
	}
	if o.state != from || o.restocked {
		rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, fmt.Sprintf("%s event of an entry already %s", e.Type, o.want())})
		return
	}
	o.state = to
	if to != ledger.StateReserved {
		return
	}
	it.Fold -= o.quantity
	it.Reserved += o.quantity
	if beforeCheckpoint(e.OrderID, checkpoint) {
		it.CheckpointLive += o.quantity // the entry, before the checkpoint, holds units now
	}
	if it.Reserved+it.Sold > it.PutOnSale {
		rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID,
			fmt.Sprintf("%s event takes reserved plus paid to %d units of %d put on sale", e.Type, it.Reserved+it.Sold, it.PutOnSale)})
	}
}

// splitListed splits events into those of one entry and those listing several (Orders):
// waitlisted events, and lost events since they list their entries.
func splitListed(events []ledger.Event) (one, listed []ledger.Event) {
	for _, e := range events {
		if len(e.Orders) > 0 {
			listed = append(listed, e)
		} else {
			one = append(one, e)
		}
	}
	return one, listed
}

// moveListed applies events that list their entries: the rows move from status from to to.
// (An entry's order event comes before the draw in its partition's stream, so its row is
// there.)
func moveListed(ctx context.Context, tx *sql.Tx, events []ledger.Event, from, to string, now time.Time) error {
	var ids []string
	for _, e := range events {
		ids = append(ids, e.Orders...)
	}
	for len(ids) > 0 {
		n := min(len(ids), rowsPerStatement)
		q, args, err := sq.Update("orders").Set("status", to).Set("updated_at", now).
			Where(sq.Eq{"order_id": ids[:n], "status": from}).ToSql()
		if err != nil {
			return fmt.Errorf("build update: %w", err)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// drawWaiting reports whether status is that of a draw entry holding no units.
func drawWaiting(status string) bool {
	return status == ledger.StatusRegistered || status == ledger.StatusWaitlisted || status == ledger.StatusLost
}
