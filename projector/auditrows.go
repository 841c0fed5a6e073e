package projector

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	sq "github.com/Masterminds/squirrel"

	"github.com/flashsale/flashsale/ledger"
)

// orderColumns are the columns the audit reads of an order row.
var orderColumns = []string{"order_id", "item_id", "request_id", "quantity", "status", "tally"}

// readBounded reads, in one snapshot, item_totals and the order rows the ledger's fold can
// compare one by one: per partition, every row after its checkpoint (by order ID: a range of
// the primary key), the rows of the orders the fold holds from before it (still reserved or
// waiting there), and the live rows holding the request of a conflict-cancelled order. Then it
// leaves out the rows past the cut and takes their units out of the totals.
func (a *auditor) readBounded(ctx context.Context) error {
	return a.snapshot(ctx, a.boundedRows)
}

// boundedRows reads into rows, in tx, the rows readBounded describes.
func (a *auditor) boundedRows(ctx context.Context, tx *sql.Tx, rows map[string]mysqlOrder) error {
	for p, ckpt := range a.checkpoints {
		if err := rowsAfter(ctx, tx, p, ckpt, rows); err != nil {
			return err
		}
	}
	var ids []string
	for id := range a.orders {
		if _, ok := rows[id]; !ok {
			ids = append(ids, id)
		}
	}
	for len(ids) > 0 {
		n := min(len(ids), rowsPerStatement)
		if err := readOrders(ctx, tx, sq.Eq{"order_id": ids[:n]}, func(id string, r mysqlOrder) { rows[id] = r }); err != nil {
			return err
		}
		ids = ids[n:]
	}
	held, err := a.holderRows(ctx, tx)
	a.held = held
	return err
}

// snapshot reads item_totals and, with read, order rows, in one read-only snapshot; then it
// keeps the rows (keepRows).
func (a *auditor) snapshot(ctx context.Context, read func(context.Context, *sql.Tx, map[string]mysqlOrder) error) error {
	tx, err := a.store.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("audit: begin: %w", err)
	}
	defer tx.Rollback()
	if a.totals, err = readTotals(ctx, tx); err != nil {
		return err
	}
	rows := map[string]mysqlOrder{}
	if err := read(ctx, tx, rows); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return a.keepRows(ctx, rows)
}

// keepRows takes rows as the audit's, less those past the cut, whose units it takes out of
// the totals.
func (a *auditor) keepRows(ctx context.Context, rows map[string]mysqlOrder) error {
	a.rep.OrderRows = int64(len(rows))
	dropped, err := dropPastCut(ctx, a.l, a.group, rows, a.cuts)
	if err != nil {
		return err
	}
	for _, r := range dropped {
		if r.tally != "" {
			a.totals.add(r.item, r.tally, -r.quantity, -1)
		}
	}
	a.rows = rows
	a.settled = a.rep.Pending == 0
	return nil
}

// rowsAfter adds to rows partition p's order rows after stream ID ckpt ("" for all). IDs sort
// as text in MySQL: the range from "p-<ckpt's ms>" to "p." holds every canonical ID of p at
// or after ckpt's millisecond while IDs have as many digits (until the year 2286); the rows
// at or before ckpt in it are left for the ledger's lookup. A row whose ID does not parse stays,
// to be reported.
func rowsAfter(ctx context.Context, tx *sql.Tx, p int, ckpt string, rows map[string]mysqlOrder) error {
	from := fmt.Sprintf("%d-", p)
	if ms, _, ok := strings.Cut(ckpt, "-"); ok {
		from += ms
	}
	return readOrders(ctx, tx, sq.And{sq.Gt{"order_id": from}, sq.Lt{"order_id": fmt.Sprintf("%d.", p)}},
		func(id string, r mysqlOrder) {
			if _, sid, err := ledger.ParseOrderID(id); err == nil && ckpt != "" && ledger.CompareIDs(sid, ckpt) <= 0 {
				return
			}
			rows[id] = r
		})
}

// readOrders reads the order rows where holds, handing each to add.
func readOrders(ctx context.Context, q queryer, where sq.Sqlizer, add func(string, mysqlOrder)) error {
	b := sq.Select(orderColumns...).From("orders")
	if where != nil {
		b = b.Where(where)
	}
	query, args, err := b.ToSql()
	if err != nil {
		return fmt.Errorf("build order read: %w", err)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("read orders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var o mysqlOrder
		var tally sql.NullString
		if err := rows.Scan(&id, &o.item, &o.request, &o.quantity, &o.status, &tally); err != nil {
			return fmt.Errorf("read orders: %w", err)
		}
		o.tally = tally.String
		add(id, o)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read orders: %w", err)
	}
	return nil
}

// queryer is a *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// holderRows returns the (item, request) pairs of the fold's conflict-cancelled orders that a
// live MySQL row holds (looked up by the unique key on item_id and active_request_id).
func (a *auditor) holderRows(ctx context.Context, tx *sql.Tx) (map[[2]string]bool, error) {
	var want sq.Or
	for _, o := range a.orders {
		if o.restocked && o.reason == ReasonRequestConflict {
			want = append(want, sq.Eq{"item_id": o.item, "active_request_id": o.request})
		}
	}
	held := map[[2]string]bool{}
	for len(want) > 0 {
		n := min(len(want), 100)
		err := readOrders(ctx, tx, want[:n], func(_ string, r mysqlOrder) {
			if r.status != ledger.StatusCancelled && r.status != ledger.StatusExpired {
				held[[2]string{r.item, r.request}] = true
			}
		})
		if err != nil {
			return nil, err
		}
		want = want[n:]
	}
	return held, nil
}

// readAll reads, in one snapshot, item_totals and every order row; it reports the rows that
// item_totals does not count under their status, and the totals that differ from the rows'.
func (a *auditor) readAll(ctx context.Context) error {
	return a.snapshot(ctx, a.allRows)
}

// allRows reads every order row into rows, in tx, and checks item_totals against them.
func (a *auditor) allRows(ctx context.Context, tx *sql.Tx, rows map[string]mysqlOrder) error {
	counted := totals{}
	err := readOrders(ctx, tx, nil, func(id string, r mysqlOrder) {
		rows[id] = r
		switch {
		case r.tally == "":
			a.violation(Violation{r.item, id, "item_totals do not count the row (status " + r.status + "): it was not written by the projector"})
		case r.tally != r.status:
			a.violation(Violation{r.item, id, fmt.Sprintf("item_totals count the row as %s, its status is %s: it was changed outside the projector", r.tally, r.status)})
		}
		if r.tally != "" {
			counted.add(r.item, r.tally, r.quantity, 1)
		}
	})
	if err != nil {
		return err
	}
	for k := range union(a.totals, counted) {
		if got, want := a.totals[k], counted[k]; got != want {
			a.violation(Violation{ItemID: k.item, What: fmt.Sprintf("item_totals hold %d units in %d %s orders, the rows %d units in %d",
				got.units, got.orders, k.status, want.units, want.orders)})
		}
	}
	return nil
}

// union yields the keys of both maps.
func union[K comparable, V any](x, y map[K]V) map[K]bool {
	keys := make(map[K]bool, len(x)+len(y))
	for k := range x {
		keys[k] = true
	}
	for k := range y {
		keys[k] = true
	}
	return keys
}

// compareTotals compares, per item, the units MySQL's item_totals count (less the rows past
// the cut) with the ledger's fold: live units (confirmed, paid, reserved) with sold plus
// reserved, given-back units (cancelled, expired) with restocked plus released. Differences
// count once every entry up to the cut was projected. With Audit, they are also the item's
// MySQL columns of the report.
func (a *auditor) compareTotals() {
	live, back := map[string]int64{}, map[string]int64{}
	for k, v := range a.totals {
		switch k.status {
		case ledger.StatusConfirmed, ledger.StatusPaid, ledger.StatusReserved:
			live[k.item] += v.units
		case ledger.StatusCancelled, ledger.StatusExpired:
			back[k.item] += v.units
		}
	}
	if a.settled {
		for id, it := range a.items {
			if got, want := live[id], it.Sold+it.Reserved; got != want {
				a.violation(Violation{ItemID: id, What: fmt.Sprintf("item_totals in MySQL count %d live units, the ledger %d (sold %d, reserved %d)", got, want, it.Sold, it.Reserved)})
			}
			if got, want := back[id], it.Restocked+it.Released; got != want {
				a.violation(Violation{ItemID: id, What: fmt.Sprintf("item_totals in MySQL count %d units given back, the ledger %d (restocked %d, released %d)", got, want, it.Restocked, it.Released)})
			}
		}
		for id := range union(live, back) {
			if a.items[id] == nil && (live[id] != 0 || back[id] != 0) {
				a.violation(Violation{ItemID: id, What: fmt.Sprintf("item_totals in MySQL count %d live units and %d given back of an item the ledger does not hold", live[id], back[id])})
			}
		}
	}
	if a.all {
		return
	}
	for id := range union(live, back) {
		if live[id] != 0 || back[id] != 0 {
			it := a.item(id)
			it.Confirmed, it.Cancelled = live[id], back[id]
		}
	}
}
