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
	// Sold counts units of live orders in the ledger (orders minus restocks).
	Sold int64 `json:"sold"`
	// Restocked counts units given back by restock events.
	Restocked int64 `json:"restocked"`
	// Fold is the stock the ledger's events add up to; Stock is the Redis counter.
	Fold  int64 `json:"ledger_stock"`
	Stock int64 `json:"redis_stock"`
	// Confirmed and Cancelled count units by status in MySQL.
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
}

type mysqlOrder struct {
	item, request, status string
	quantity              int64
}

// Audit checks the books of every item the ledger has events for: the ledger fold against
// the Redis stock counter, and MySQL against the ledger (orders missing, extra, with another
// status or quantity, and live duplicates of one request); every dead entry (Ledger.Dead) is
// a violation too.
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
	for p := range l.Keys().Partitions() {
		g, err := l.GroupInfo(ctx, p, group)
		if err != nil {
			return rep, err
		}
		rep.Pending += g.Pending + g.Lag
		if !g.Exists {
			n, err := l.Length(ctx, p)
			if err != nil {
				return rep, err
			}
			rep.Pending += n
		}
		after := ""
		for {
			events, err := l.Range(ctx, p, after, 1000)
			if err != nil {
				return rep, err
			}
			if len(events) == 0 {
				break
			}
			after = events[len(events)-1].StreamID
			for _, e := range events {
				if e.Malformed != nil {
					continue
				}
				it := item(e.ItemID)
				switch e.Type {
				case ledger.EventStock:
					if e.Op == ledger.StockSet {
						it.Fold = e.Quantity
						it.PutOnSale = e.Quantity + it.Sold
					} else {
						it.Fold += e.Quantity
						it.PutOnSale += e.Quantity
					}
				case ledger.EventOrder:
					it.Fold -= e.Quantity
					it.Sold += e.Quantity
					orders[e.OrderID] = &ledgerOrder{item: e.ItemID, request: e.RequestID, quantity: e.Quantity}
				case ledger.EventRestock:
					it.Fold += e.Quantity
					it.Sold -= e.Quantity
					it.Restocked += e.Quantity
					if o := orders[e.OrderID]; o != nil {
						o.restocked = true
					} else {
						rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, "restock of an order the ledger does not hold"})
					}
				}
			}
		}
	}
	for id, it := range items {
		x, err := l.Item(ctx, id)
		if err != nil {
			rep.Violations = append(rep.Violations, Violation{ItemID: id, What: fmt.Sprintf("redis stock counter unreadable: %v", err)})
			continue
		}
		it.Stock = x.Stock
		if it.Stock != it.Fold {
			rep.Violations = append(rep.Violations, Violation{ItemID: id,
				What: fmt.Sprintf("redis stock %d differs from the ledger's %d (put on sale %d, sold %d)", it.Stock, it.Fold, it.PutOnSale, it.Sold)})
		}
		if it.Stock < 0 {
			rep.Violations = append(rep.Violations, Violation{ItemID: id, What: fmt.Sprintf("oversold: stock %d", it.Stock)})
		}
	}

	rows, err := store.allOrders(ctx)
	if err != nil {
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
		case StatusConfirmed:
			it.Confirmed += r.quantity
		case StatusCancelled:
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
		case !o.restocked && r.status != StatusConfirmed:
			flag(it, id, r.quantity, "live in the ledger but "+r.status+" in MySQL")
		}
	}
	live := map[[2]string]string{}
	for id, o := range orders {
		if _, ok := rows[id]; !ok {
			flag(item(o.item), id, o.quantity, "in the ledger but not in MySQL")
		}
		if o.restocked {
			continue
		}
		key := [2]string{o.item, o.request}
		if other, ok := live[key]; ok {
			flag(item(o.item), id, o.quantity, fmt.Sprintf("request %q holds two live orders (%s and %s)", o.request, other, id))
		}
		live[key] = id
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
