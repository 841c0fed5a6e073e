package projector

import (
	"context"
	"fmt"
	"slices"
	"strings"

	sq "github.com/Masterminds/squirrel"

	"github.com/flashsale/flashsale/ledger"
)

// ItemAudit is one item's books: what the ledger says, what Redis holds, what MySQL holds.
type ItemAudit struct {
	ItemID string `json:"item_id"`
	// PutOnSale is the units put on sale: each set makes it the set value plus the units sold
	// so far; each add adds to it.
	PutOnSale int64 `json:"put_on_sale"`
	// Sold counts units of live orders in the ledger (orders minus restocks), but for those
	// still reserved: Reserved counts those. Stock + Sold + Reserved = PutOnSale.
	Sold     int64 `json:"sold"`
	Reserved int64 `json:"reserved"`
	// Restocked counts units given back by restock events; Released those given back by
	// cancelled and expired events (reservations not paid).
	Restocked int64 `json:"restocked"`
	Released  int64 `json:"released"`
	// Fold is the stock the ledger's events add up to; Stock is the Redis counter.
	Fold  int64 `json:"ledger_stock"`
	Stock int64 `json:"redis_stock"`
	// Confirmed and Cancelled count units by status in MySQL (Confirmed with paid and
	// reserved, Cancelled with expired).
	Confirmed int64 `json:"mysql_confirmed"`
	Cancelled int64 `json:"mysql_cancelled"`
	// InFlight counts units of orders whose MySQL row does not match the ledger yet while
	// entries are still pending: not a violation.
	InFlight int64 `json:"in_flight"`
}

// Violation is one thing that does not add up.
type Violation struct {
	ItemID  string `json:"item_id,omitempty"`
	OrderID string `json:"order_id,omitempty"`
	What    string `json:"what"`
}

// AuditReport is the result of Audit.
type AuditReport struct {
	Items      []ItemAudit `json:"items"`
	Violations []Violation `json:"violations"`
	// Pending counts ledger entries not yet projected (undelivered or unacknowledged); MySQL
	// is compared strictly only when it is 0.
	Pending int64 `json:"pending"`
}

// Clean reports whether the audit found no violation.
func (r AuditReport) Clean() bool { return len(r.Violations) == 0 }

// ledgerOrder is an order as the ledger's events leave it.
type ledgerOrder struct {
	item, request string
	quantity      int64
	restocked     bool
	// reason is the restock event's reason.
	reason string
	// state is the reservation's state for an order placed under a pay-within rule, else "".
	state string
	// returns counts the events that gave its units back (restock, cancelled, expired).
	returns int
}

// want is the MySQL status the ledger's events leave the order in.
func (o *ledgerOrder) want() string {
	switch {
	case o.restocked:
		return StatusCancelled
	case o.state != "":
		return o.state
	}
	return StatusConfirmed
}

// live reports whether the order holds its request_id (not cancelled nor expired).
func (o *ledgerOrder) live() bool {
	w := o.want()
	return w != StatusCancelled && w != StatusExpired
}

type mysqlOrder struct {
	item, request, status string
	quantity              int64
}

// Audit checks the books of every item the ledger has events for: the ledger fold against
// the Redis stock counter, and MySQL against the ledger (orders missing, extra, with another
// status or quantity, and live duplicates of one request); every dead entry (Ledger.Dead) is
// a violation too.
//
// It reads one consistent cut, so that it can run while a sale goes on: per partition, one
// script call (Ledger.Snapshot) returns the stream's last ID with the stock counters and the
// group's position at that instant; the fold stops at that ID, and MySQL rows of orders after
// it are left out. MySQL is compared strictly only when every entry up to the cut had been
// projected (Pending is 0).
func Audit(ctx context.Context, l *ledger.Ledger, store *Store, group string) (AuditReport, error) {
	rep := AuditReport{Items: []ItemAudit{}, Violations: []Violation{}}
	items := map[string]*ItemAudit{}
	orders := map[string]*ledgerOrder{}
	item := func(id string) *ItemAudit {
		if items[id] == nil {
			items[id] = &ItemAudit{ItemID: id}
		}
		return items[id]
	}
	keys := l.Keys()
	cuts := make([]string, keys.Partitions())
	for p := range keys.Partitions() {
		snap, err := auditPartition(ctx, l, p, group, &rep, item, orders)
		if err != nil {
			return rep, err
		}
		cuts[p] = snap.LastID
		for id, it := range items {
			if keys.Partition(id) != p {
				continue
			}
			stock, ok := snap.Stock[id]
			if !ok {
				rep.Violations = append(rep.Violations, Violation{ItemID: id, What: "redis stock counter missing"})
				continue
			}
			it.Stock = stock
			if it.Stock != it.Fold {
				rep.Violations = append(rep.Violations, Violation{ItemID: id,
					What: fmt.Sprintf("redis stock %d differs from the ledger's %d (put on sale %d, sold %d)", it.Stock, it.Fold, it.PutOnSale, it.Sold)})
			}
			if it.Stock < 0 {
				rep.Violations = append(rep.Violations, Violation{ItemID: id, What: fmt.Sprintf("oversold: stock %d", it.Stock)})
			}
		}
	}

	rows, err := store.allOrders(ctx)
	if err != nil {
		return rep, err
	}
	if err := dropPastCut(ctx, l, group, rows, cuts); err != nil {
		return rep, err
	}
	settled := rep.Pending == 0
	flag := func(it *ItemAudit, orderID string, quantity int64, what string) {
		if settled {
			rep.Violations = append(rep.Violations, Violation{it.ItemID, orderID, what})
		} else {
			it.InFlight += quantity
		}
	}
	for id, r := range rows {
		it := item(r.item)
		switch r.status {
		case StatusConfirmed, StatusPaid, StatusReserved:
			it.Confirmed += r.quantity
		case StatusCancelled, StatusExpired:
			it.Cancelled += r.quantity
		}
		o := orders[id]
		switch {
		case o == nil:
			rep.Violations = append(rep.Violations, Violation{r.item, id, "order in MySQL is not in the ledger"})
		case o.item != r.item || o.quantity != r.quantity || o.request != r.request:
			rep.Violations = append(rep.Violations, Violation{r.item, id, fmt.Sprintf("MySQL row (item %s, request %q, quantity %d) differs from the ledger (item %s, request %q, quantity %d)", r.item, r.request, r.quantity, o.item, o.request, o.quantity)})
		case o.restocked && r.status != StatusCancelled:
			flag(it, id, r.quantity, "restocked in the ledger but "+r.status+" in MySQL")
		case !o.restocked && r.status != o.want():
			flag(it, id, r.quantity, o.want()+" in the ledger but "+r.status+" in MySQL")
		}
	}
	live := map[[2]string]string{}
	for id, o := range orders {
		if _, ok := rows[id]; !ok {
			flag(item(o.item), id, o.quantity, "in the ledger but not in MySQL")
		}
		if o.returns > 1 {
			rep.Violations = append(rep.Violations, Violation{o.item, id, fmt.Sprintf("units given back %d times", o.returns)})
		}
		if !o.live() {
			continue
		}
		key := [2]string{o.item, o.request}
		if other, ok := live[key]; ok {
			flag(item(o.item), id, o.quantity, fmt.Sprintf("request %q holds two live orders (%s and %s)", o.request, other, id))
		}
		live[key] = id
	}
	// An order cancelled because its request_id held another live order needs that holder,
	// byte for byte: MySQL must not have taken two distinct request_ids for one.
	holders := map[[2]string]bool{}
	for key := range live {
		holders[key] = true
	}
	for _, r := range rows {
		if r.status != StatusCancelled && r.status != StatusExpired {
			holders[[2]string{r.item, r.request}] = true
		}
	}
	for id, o := range orders {
		if o.restocked && o.reason == ReasonRequestConflict && !holders[[2]string{o.item, o.request}] {
			rep.Violations = append(rep.Violations, Violation{o.item, id,
				fmt.Sprintf("conflict-cancel without holder: request %q holds no other live order", o.request)})
		}
	}

	dead, err := l.Dead(ctx, "")
	if err != nil {
		return rep, err
	}
	for _, d := range dead {
		rep.Violations = append(rep.Violations, Violation{d.ItemID, d.OrderID,
			fmt.Sprintf("dead ledger entry %d/%s, acknowledged without being projected or restocked: %s", d.Partition, d.StreamID, d.Reason)})
	}

	for _, it := range items {
		rep.Items = append(rep.Items, *it)
	}
	slices.SortFunc(rep.Items, func(a, b ItemAudit) int { return strings.Compare(a.ItemID, b.ItemID) })
	slices.SortFunc(rep.Violations, func(a, b Violation) int {
		if c := strings.Compare(a.ItemID, b.ItemID); c != 0 {
			return c
		}
		return strings.Compare(a.OrderID, b.OrderID)
	})
	return rep, nil
}

// dropPastCut removes from rows the orders appended after their partition's cut: they are in
// flight, not in the books read. A row past the stream's end as read after MySQL, though, was
// never in the ledger (Redis lost it, or it was written by hand) and stays, to be reported.
func dropPastCut(ctx context.Context, l *ledger.Ledger, group string, rows map[string]mysqlOrder, cuts []string) error {
	tops := map[int]string{}
	for id := range rows {
		p, sid, err := ledger.ParseOrderID(id)
		if err != nil || p >= len(cuts) || ledger.CompareIDs(sid, cuts[p]) <= 0 {
			continue
		}
		top, ok := tops[p]
		if !ok {
			snap, err := l.Snapshot(ctx, p, group, nil)
			if err != nil {
				return err
			}
			top, tops[p] = snap.LastID, snap.LastID
		}
		if ledger.CompareIDs(sid, top) <= 0 {
			delete(rows, id)
		}
	}
	return nil
}

// auditPartition folds partition p's events up to one snapshot's last ID into the items and
// orders, adds what was not projected at that instant to rep.Pending, and returns the
// snapshot. The snapshot reads the counters of the items the fold has met; when the fold meets
// more (new items on sale meanwhile), it takes another, later one and folds on to it.
func auditPartition(ctx context.Context, l *ledger.Ledger, p int, group string, rep *AuditReport,
	item func(string) *ItemAudit, orders map[string]*ledgerOrder) (ledger.Snapshot, error) {
	keys := l.Keys()
	seen := map[string]bool{} // items of p the fold has met
	var snap ledger.Snapshot
	// For the undelivered count: entries folded, and the IDs of those after the first
	// snapshot's last delivered ID (a later snapshot's is not before it).
	var total int64
	var tail []string
	floor := ""
	after := ""
	for round := 0; ; round++ {
		ids := make([]string, 0, len(seen))
		for id := range seen {
			ids = append(ids, id)
		}
		var err error
		if snap, err = l.Snapshot(ctx, p, group, ids); err != nil {
			return snap, err
		}
		if round == 0 {
			floor = snap.LastDelivered
		}
		if snap.LastID == "" || ledger.CompareIDs(after, snap.LastID) >= 0 {
			break
		}
		more := false
		for {
			events, err := l.RangeTo(ctx, p, after, snap.LastID, 1000)
			if err != nil {
				return snap, err
			}
			if len(events) == 0 {
				break
			}
			after = events[len(events)-1].StreamID
			for _, e := range events {
				total++
				if ledger.CompareIDs(e.StreamID, floor) > 0 {
					tail = append(tail, e.StreamID)
				}
				if e.Malformed != nil {
					continue
				}
				if ledger.ValidateItemID(e.ItemID) != nil || keys.Partition(e.ItemID) != p {
					// No script writes such an entry, and no counter of p holds its units.
					rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID,
						fmt.Sprintf("%s entry %s of partition %d names an item that is not of this partition", e.Type, e.StreamID, p)})
					continue
				}
				if !seen[e.ItemID] {
					seen[e.ItemID] = true
					more = true
				}
				foldEvent(rep, item(e.ItemID), e, orders)
			}
		}
		if !more {
			break
		}
	}
	switch {
	case !snap.GroupExists:
		rep.Pending += total
	default:
		rep.Pending += snap.Pending
		for _, id := range tail {
			if ledger.CompareIDs(id, snap.LastDelivered) > 0 {
				rep.Pending++
			}
		}
	}
	return snap, nil
}

// foldEvent applies one well-formed event to its item it.
func foldEvent(rep *AuditReport, it *ItemAudit, e ledger.Event, orders map[string]*ledgerOrder) {
	switch e.Type {
	case ledger.EventStock:
		// A stock event records the counter after it (same script call): the fold restarts
		// from there, so that a set, or an add that corrects a counter changed by hand, makes
		// the books agree again. Without such a change both ways give the same stock.
		if e.Op == ledger.StockSet {
			it.Fold = e.Quantity
		} else {
			it.Fold = e.Stock
		}
		it.PutOnSale = it.Fold + it.Sold + it.Reserved
	case ledger.EventWon, ledger.EventWaitlisted, ledger.EventPromoted, ledger.EventLost:
		foldDraw(rep, it, e, orders)
	case ledger.EventOrder:
		if e.Draw {
			foldDraw(rep, it, e, orders)
			return
		}
		it.Fold -= e.Quantity
		o := &ledgerOrder{item: e.ItemID, request: e.RequestID, quantity: e.Quantity}
		if e.PayBy.IsZero() {
			it.Sold += e.Quantity
		} else {
			it.Reserved += e.Quantity
			o.state = ledger.StateReserved
		}
		orders[e.OrderID] = o
	case ledger.EventRestock:
		it.Fold += e.Quantity
		it.Restocked += e.Quantity
		if o := orders[e.OrderID]; o != nil {
			unsell(it, o)
			o.restocked = true
			o.reason = e.Reason
			o.returns++
		} else {
			it.Sold -= e.Quantity
			rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, "restock of an order the ledger does not hold"})
		}
	case ledger.EventPaid, ledger.EventCancelled, ledger.EventExpired:
		o := orders[e.OrderID]
		switch {
		case o == nil:
			rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, string(e.Type) + " event of an order the ledger does not hold"})
			return
		case o.state != ledger.StateReserved || o.restocked:
			rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, fmt.Sprintf("%s event of an order already %s", e.Type, o.want())})
			if e.Type == ledger.EventPaid {
				return
			}
		}
		if e.Type == ledger.EventPaid {
			it.Reserved -= o.quantity
			it.Sold += o.quantity
			o.state = ledger.StatePaid
			return
		}
		if e.Quantity != o.quantity {
			rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, fmt.Sprintf("%s event gives back %d units of an order of %d", e.Type, e.Quantity, o.quantity)})
		}
		it.Fold += e.Quantity
		it.Released += e.Quantity
		unsell(it, o)
		o.state = string(e.Type)
		o.returns++
	}
}

// unsell takes the units of o, given back, out of the item's sold or reserved units (once).
func unsell(it *ItemAudit, o *ledgerOrder) {
	switch {
	case o.returns > 0:
	case o.state == ledger.StateReserved:
		it.Reserved -= o.quantity
	default:
		it.Sold -= o.quantity
	}
}

// allOrders reads every order row, by order_id.
func (s *Store) allOrders(ctx context.Context) (map[string]mysqlOrder, error) {
	q, args := sq.Select("order_id", "item_id", "request_id", "quantity", "status").From("orders").MustSql()
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	defer rows.Close()
	out := map[string]mysqlOrder{}
	for rows.Next() {
		var id string
		var o mysqlOrder
		if err := rows.Scan(&id, &o.item, &o.request, &o.quantity, &o.status); err != nil {
			return nil, fmt.Errorf("read orders: %w", err)
		}
		out[id] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	return out, nil
}
