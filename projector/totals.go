package projector

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	sq "github.com/Masterminds/squirrel"

	"github.com/flashsale/flashsale/ledger"
)

// The table item_totals (sql/0005_item_totals.sql) holds, per item and status, the units and
// the number of the order rows that count under that status. Each row's tally column names
// the status it is counted under (NULL: not counted). Every write of the projector keeps both
// in its own transaction:
//
//   - an orders INSERT whose every row was new (MySQL's affected rows equal the rows sent) wrote
//     them with their tally set and counts them at once (the usual batch: no extra statement);
//   - any other written row (a redelivery, a conflict, a status transition, a draw step) is
//     settled after the writes: read with FOR UPDATE, and if its tally is not its status, its
//     units move from the tally's total to the status' total and the tally is set.
//
// A row is settled under its row lock, so two transactions never count one change twice, and
// the totals rows are written last, in (item_id, status) order, so that projector workers
// never wait for each other's totals in a cycle.

// totalKey is one row of item_totals.
type totalKey struct{ item, status string }

// total is what a row of item_totals counts.
type total struct{ units, orders int64 }

// totals are changes to item_totals (or its rows, as read).
type totals map[totalKey]total

// add counts orders rows of units units under item and status (negative to take them out).
func (t totals) add(item, status string, units, orders int64) {
	k := totalKey{item, status}
	v := t[k]
	v.units += units
	v.orders += orders
	if v == (total{}) {
		delete(t, k)
		return
	}
	t[k] = v
}

// settle counts the rows of ids whose tally is not their status: it moves them in t and sets
// their tally, under their row locks.
func settle(ctx context.Context, tx *sql.Tx, ids []string, t totals) error {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for len(ids) > 0 {
		n := min(len(ids), rowsPerStatement)
		if err := settleSome(ctx, tx, ids[:n], t); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

func settleSome(ctx context.Context, tx *sql.Tx, ids []string, t totals) error {
	q, args, err := sq.Select("order_id", "item_id", "quantity", "status", "tally").From("orders").
		Where(sq.Eq{"order_id": ids}).Suffix("FOR UPDATE").ToSql()
	if err != nil {
		return fmt.Errorf("build settle: %w", err)
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("settle totals: %w", err)
	}
	var moved []string
	for rows.Next() {
		var id, item, status string
		var quantity int64
		var tally sql.NullString
		if err := rows.Scan(&id, &item, &quantity, &status, &tally); err != nil {
			rows.Close()
			return fmt.Errorf("settle totals: %w", err)
		}
		if tally.Valid && tally.String == status {
			continue
		}
		if tally.Valid {
			t.add(item, tally.String, -quantity, -1)
		}
		t.add(item, status, quantity, 1)
		moved = append(moved, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("settle totals: %w", err)
	}
	if len(moved) == 0 {
		return nil
	}
	q, args, err = sq.Update("orders").Set("tally", sq.Expr("status")).Where(sq.Eq{"order_id": moved}).ToSql()
	if err != nil {
		return fmt.Errorf("build settle: %w", err)
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("settle totals: %w", err)
	}
	return nil
}

// writeTotals adds t to item_totals, in (item_id, status) order.
func writeTotals(ctx context.Context, tx *sql.Tx, t totals) error {
	keys := make([]totalKey, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b totalKey) int {
		return cmp.Or(strings.Compare(a.item, b.item), strings.Compare(a.status, b.status))
	})
	for len(keys) > 0 {
		n := min(len(keys), rowsPerStatement)
		q := sq.Insert("item_totals").Columns("item_id", "status", "units", "orders")
		for _, k := range keys[:n] {
			q = q.Values(k.item, k.status, t[k].units, t[k].orders)
		}
		q = q.Suffix("ON DUPLICATE KEY UPDATE units = units + VALUES(units), orders = orders + VALUES(orders)")
		if err := exec(ctx, tx, q); err != nil {
			return fmt.Errorf("write item totals: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// settledIDs returns the order IDs of events whose rows must be settled after the writes: the
// status transitions and the draw steps (waitlisted and lost events list their orders).
func settledIDs(events []ledger.Event) []string {
	var ids []string
	for _, e := range events {
		if len(e.Orders) > 0 {
			ids = append(ids, e.Orders...)
		} else if e.OrderID != "" {
			ids = append(ids, e.OrderID)
		}
	}
	return ids
}

// Recount counts item_totals anew from the rows, and sets every row's tally to its status, in
// one transaction (which locks every row while it runs). Replay calls it after it wrote a
// projection that rows deleted or changed by hand had put out of step with its totals.
func (s *Store) Recount(ctx context.Context) error {
	var err error
	for range 5 { // a deadlock with a projector's write is retried
		if err = s.recount(ctx); err == nil || Permanent(err) {
			return err
		}
	}
	return err
}

func (s *Store) recount(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recount totals: %w", err)
	}
	defer tx.Rollback()
	for _, q := range []string{
		"UPDATE orders SET tally = status WHERE NOT (tally <=> status)",
		"DELETE FROM item_totals",
		`INSERT INTO item_totals (item_id, status, units, orders)
			SELECT item_id, tally, SUM(quantity), COUNT(*) FROM orders GROUP BY item_id, tally`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("recount totals: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recount totals: %w", err)
	}
	return nil
}

// readTotals reads item_totals (in tx, a snapshot shared with the rows read beside it).
func readTotals(ctx context.Context, tx *sql.Tx) (totals, error) {
	rows, err := tx.QueryContext(ctx, "SELECT item_id, status, units, orders FROM item_totals")
	if err != nil {
		return nil, fmt.Errorf("read item totals: %w", err)
	}
	defer rows.Close()
	t := totals{}
	for rows.Next() {
		var k totalKey
		var v total
		if err := rows.Scan(&k.item, &k.status, &v.units, &v.orders); err != nil {
			return nil, fmt.Errorf("read item totals: %w", err)
		}
		t[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read item totals: %w", err)
	}
	return t, nil
}
