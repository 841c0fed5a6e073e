package projector

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	sq "github.com/Masterminds/squirrel"
	"github.com/go-sql-driver/mysql"

	"github.com/flashsale/flashsale/ledger"
)

// ReasonBuyer is the cancel_reason of an order its buyer cancelled.
const ReasonBuyer = "cancelled by the buyer"

// rowsPerStatement bounds a multi-row INSERT (MySQL allows 65535 placeholders).
const rowsPerStatement = 1000

// Store writes ledger events to MySQL and reads orders back. Every write is idempotent: a
// redelivered event changes nothing.
type Store struct {
	db  *sql.DB
	now func() time.Time

	// inserts are the prepared orders INSERTs by row count (see insertStatement).
	mu      sync.Mutex
	inserts map[int]*sql.Stmt
}

// maxInsertStatements bounds the prepared INSERTs a Store keeps, one per row count: a busy
// projector writes full batches, always the same count; an idle one a few small counts.
const maxInsertStatements = 16

// NewStore returns a Store on db.
func NewStore(db *sql.DB) *Store {
	return &Store{db: db, now: time.Now}
}

// Apply projects events in one transaction: order events become confirmed orders, restock
// events cancel (or insert as cancelled) their order, stock events update the item. Malformed
// events must not be passed. It returns the order events that were not written because their
// (item_id, request_id) already holds another live order: a permanent failure for those
// orders, which the caller restocks. Errors are either transient (retry) or permanent for the
// batch (see Permanent).
func (s *Store) Apply(ctx context.Context, events []ledger.Event) ([]ledger.Event, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	now := s.now().UTC()
	var orders, restocks, stocks, closes, draws []ledger.Event
	for _, e := range events {
		if isDrawEvent(e) {
			draws = append(draws, e)
			continue
		}
		switch e.Type {
		case ledger.EventOrder:
			orders = append(orders, e)
		case ledger.EventRestock:
			restocks = append(restocks, e)
		case ledger.EventStock:
			stocks = append(stocks, e)
		case ledger.EventPaid, ledger.EventCancelled, ledger.EventExpired:
			closes = append(closes, e)
		}
	}
	t := totals{}
	redone, err := s.insertOrders(ctx, tx, orders, now, t)
	if err != nil {
		return nil, err
	}
	if err := applyDraws(ctx, tx, draws, now); err != nil {
		return nil, err
	}
	if err := closeOrders(ctx, tx, closes, now); err != nil {
		return nil, err
	}
	if err := cancelOrders(ctx, tx, restocks, now); err != nil {
		return nil, err
	}
	moved := settledIDs(redone)
	for _, es := range [][]ledger.Event{draws, closes, restocks} {
		moved = append(moved, settledIDs(es)...)
	}
	if err := settle(ctx, tx, moved, t); err != nil {
		return nil, err
	}
	if err := upsertItems(ctx, tx, stocks, now); err != nil {
		return nil, err
	}
	conflicts, err := missingOrders(ctx, tx, redone)
	if err != nil {
		return nil, err
	}
	if err := writeTotals(ctx, tx, t); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return conflicts, nil
}

// insertOrders inserts the order events' rows. A chunk of new orders (the usual case) goes in
// with one plain INSERT that sets each row's tally, and is counted in t at once. A chunk that
// meets an existing row (a redelivery, or a request_id holding another live order) fails whole
// on the duplicate key (MySQL rolls back that statement only) and goes in again with an
// upsert that leaves existing rows as they are; its events are returned, for their rows to be
// settled and their conflicts found (missingOrders).
func (s *Store) insertOrders(ctx context.Context, tx *sql.Tx, orders []ledger.Event, now time.Time, t totals) ([]ledger.Event, error) {
	var redone []ledger.Event
	for chunk := range chunks(orders) {
		const cols = 10
		args := make([]any, 0, cols*len(chunk))
		for _, e := range chunk {
			status := orderStatus(e)
			args = append(args, e.OrderID, e.RequestID, e.UserID, e.ItemID, e.Quantity, status, nullTime(e.PayBy), e.Time.UTC(), now, status)
		}
		// Built by hand rather than with squirrel, whose builder costs more Go CPU per row
		// than the rest of the projection: this statement carries every order.
		var err error
		if st := s.insertStatement(ctx, len(chunk)); st != nil {
			if _, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil && !duplicate(err) {
				s.dropStatement(len(chunk), st) // prepared anew on the retry
			}
		} else {
			_, err = tx.ExecContext(ctx, insertOrdersSQL(len(chunk), false), args...)
		}
		switch {
		case err == nil:
			for _, e := range chunk {
				t.add(e.ItemID, orderStatus(e), e.Quantity, 1)
			}
			continue
		case !duplicate(err):
			return nil, fmt.Errorf("insert orders: %w", err)
		}
		// A row that exists (redelivery, or already cancelled) stays as it is; a row whose
		// (item_id, request_id) holds another live order is skipped and found by missingOrders.
		for i := range chunk {
			args[i*cols+cols-1] = nil // no tally: settle counts the rows written
		}
		if _, err := tx.ExecContext(ctx, insertOrdersSQL(len(chunk), true), args...); err != nil {
			return nil, fmt.Errorf("insert orders: %w", err)
		}
		redone = append(redone, chunk...)
	}
	return redone, nil
}

// orderStatus is the status an order event writes.
func orderStatus(e ledger.Event) string {
	switch {
	case !e.PayBy.IsZero():
		return ledger.StatusReserved
	case e.Draw:
		return ledger.StatusRegistered
	}
	return ledger.StatusConfirmed
}

// duplicate reports whether err is MySQL's duplicate key error.
func duplicate(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

// insertOrdersSQL is the orders INSERT of rows rows; upsert leaves existing rows alone.
func insertOrdersSQL(rows int, upsert bool) string {
	tail := ""
	if upsert {
		tail = " ON DUPLICATE KEY UPDATE order_id = order_id"
	}
	return insertRows("INSERT INTO orders (order_id,request_id,user_id,item_id,quantity,status,pay_by,created_at,updated_at,tally) VALUES ",
		10, rows, tail)
}

// insertStatement returns the orders INSERT of rows rows prepared once for the Store, or nil
// when it cannot be (more than maxInsertStatements counts, or the prepare failed: the caller
// then sends the statement as it is). A statement the server prepared stays prepared on each
// connection that ran it, so a batch costs no PREPARE round trip and no parse of its
// thousands of placeholders; database/sql prepares it again on a new connection by itself.
func (s *Store) insertStatement(ctx context.Context, rows int) *sql.Stmt {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.inserts[rows]; ok {
		return st
	}
	if len(s.inserts) >= maxInsertStatements {
		return nil
	}
	st, err := s.db.PrepareContext(ctx, insertOrdersSQL(rows, false))
	if err != nil {
		return nil
	}
	if s.inserts == nil {
		s.inserts = make(map[int]*sql.Stmt)
	}
	s.inserts[rows] = st
	return st
}

// dropStatement forgets and closes st, the INSERT of rows rows, after it failed: whatever the
// cause, the next batch does not depend on a statement that may have gone stale.
func (s *Store) dropStatement(rows int, st *sql.Stmt) {
	s.mu.Lock()
	if s.inserts[rows] == st {
		delete(s.inserts, rows)
	}
	s.mu.Unlock()
	st.Close()
}

// insertRows returns head, then rows groups of cols placeholders ("(?,?),(?,?)"), then tail.
func insertRows(head string, cols, rows int, tail string) string {
	var b strings.Builder
	b.Grow(len(head) + rows*(2*cols+2) + len(tail))
	b.WriteString(head)
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('?')
		}
		b.WriteByte(')')
	}
	b.WriteString(tail)
	return b.String()
}

func cancelOrders(ctx context.Context, tx *sql.Tx, restocks []ledger.Event, now time.Time) error {
	for chunk := range chunks(restocks) {
		q := sq.Insert("orders").Columns("order_id", "request_id", "user_id", "item_id", "quantity", "status", "cancel_reason", "created_at", "updated_at")
		for _, e := range chunk {
			q = q.Values(e.OrderID, e.RequestID, e.UserID, e.ItemID, e.Quantity, ledger.StatusCancelled, truncate(e.Reason, 255), e.Time.UTC(), now)
		}
		q = q.Suffix("ON DUPLICATE KEY UPDATE status = VALUES(status), cancel_reason = VALUES(cancel_reason), updated_at = VALUES(updated_at)")
		if err := exec(ctx, tx, q); err != nil {
			return fmt.Errorf("cancel orders: %w", err)
		}
	}
	return nil
}

// closeOrders applies paid, cancelled and expired events. Each writes the whole row if the
// order event has not been applied yet (the events may come in any order), and otherwise moves
// only a reserved row on: a redelivered event, or one that finds the order restocked, changes
// nothing. (MySQL assigns left to right: status comes last, after the columns that test it.)
func closeOrders(ctx context.Context, tx *sql.Tx, closes []ledger.Event, now time.Time) error {
	for chunk := range chunks(closes) {
		q := sq.Insert("orders").Columns("order_id", "request_id", "user_id", "item_id", "quantity", "status",
			"cancel_reason", "pay_by", "paid_at", "payment_ref", "expired_at", "created_at", "updated_at")
		for _, e := range chunk {
			var reason, ref any
			var paidAt, expiredAt sql.NullTime
			status := ledger.StatusPaid
			switch e.Type {
			case ledger.EventPaid:
				paidAt, ref = nullTime(e.Time), e.PaymentRef
			case ledger.EventCancelled:
				status, reason = ledger.StatusCancelled, ReasonBuyer
			case ledger.EventExpired:
				status, expiredAt = ledger.StatusExpired, nullTime(e.Time)
			}
			q = q.Values(e.OrderID, e.RequestID, e.UserID, e.ItemID, e.Quantity, status,
				reason, nullTime(e.PayBy), paidAt, ref, expiredAt, e.Placed.UTC(), now)
		}
		// The duplicate may be another order holding the same live (item_id, request_id): it
		// is left alone (order_id differs), and this order is then missing, as an order
		// event in that case would be.
		q = q.Suffix(`ON DUPLICATE KEY UPDATE
			cancel_reason = IF(status = 'reserved' AND order_id = VALUES(order_id), VALUES(cancel_reason), cancel_reason),
			paid_at = IF(status = 'reserved' AND order_id = VALUES(order_id), VALUES(paid_at), paid_at),
			payment_ref = IF(status = 'reserved' AND order_id = VALUES(order_id), VALUES(payment_ref), payment_ref),
			expired_at = IF(status = 'reserved' AND order_id = VALUES(order_id), VALUES(expired_at), expired_at),
			updated_at = IF(status = 'reserved' AND order_id = VALUES(order_id), VALUES(updated_at), updated_at),
			status = IF(status = 'reserved' AND order_id = VALUES(order_id), VALUES(status), status)`)
		if err := exec(ctx, tx, q); err != nil {
			return fmt.Errorf("close orders: %w", err)
		}
	}
	return nil
}

func nullTime(t time.Time) sql.NullTime {
	if t.IsZero() || t.UnixMilli() <= 0 {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: t.UTC(), Valid: true}
}

func upsertItems(ctx context.Context, tx *sql.Tx, stocks []ledger.Event, now time.Time) error {
	for chunk := range chunks(stocks) {
		q := sq.Insert("items").Columns("item_id", "stock", "per_user_limit", "starts_at", "ends_at", "ledger_id", "updated_at")
		for _, e := range chunk {
			q = q.Values(e.ItemID, e.Stock, e.Limit, msTime(e.StartMS), msTime(e.EndMS), sortableID(e.StreamID), now)
		}
		// Only a newer event (by stream ID) overwrites; ledger_id is assigned last because
		// MySQL evaluates these assignments left to right.
		q = q.Suffix(`ON DUPLICATE KEY UPDATE
			stock = IF(VALUES(ledger_id) > ledger_id, VALUES(stock), stock),
			per_user_limit = IF(VALUES(ledger_id) > ledger_id, VALUES(per_user_limit), per_user_limit),
			starts_at = IF(VALUES(ledger_id) > ledger_id, VALUES(starts_at), starts_at),
			ends_at = IF(VALUES(ledger_id) > ledger_id, VALUES(ends_at), ends_at),
			updated_at = IF(VALUES(ledger_id) > ledger_id, VALUES(updated_at), updated_at),
			ledger_id = GREATEST(VALUES(ledger_id), ledger_id)`)
		if err := exec(ctx, tx, q); err != nil {
			return fmt.Errorf("upsert items: %w", err)
		}
	}
	return nil
}

// missingOrders returns the orders of the batch that have no row after the inserts.
func missingOrders(ctx context.Context, tx *sql.Tx, orders []ledger.Event) ([]ledger.Event, error) {
	found := make(map[string]bool, len(orders))
	for chunk := range chunks(orders) {
		ids := make([]string, len(chunk))
		for i, e := range chunk {
			ids[i] = e.OrderID
		}
		q, args, err := sq.Select("order_id").From("orders").Where(sq.Eq{"order_id": ids}).ToSql()
		if err != nil {
			return nil, fmt.Errorf("build order check: %w", err)
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("check orders: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("check orders: %w", err)
			}
			found[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("check orders: %w", err)
		}
	}
	var missing []ledger.Event
	for _, e := range orders {
		if !found[e.OrderID] {
			missing = append(missing, e)
		}
	}
	return missing, nil
}

func exec(ctx context.Context, tx *sql.Tx, q sq.InsertBuilder) error {
	query, args, err := q.ToSql()
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	_, err = tx.ExecContext(ctx, query, args...)
	return err
}

// chunks yields events in slices of at most rowsPerStatement.
func chunks(events []ledger.Event) func(func([]ledger.Event) bool) {
	return func(yield func([]ledger.Event) bool) {
		for len(events) > 0 {
			n := min(len(events), rowsPerStatement)
			if !yield(events[:n]) {
				return
			}
			events = events[n:]
		}
	}
}

// Permanent reports whether err is a MySQL error that retrying cannot fix because of the data
// written (too long, out of range, invalid value). Everything else, including every outage,
// is treated as transient: an outage delays orders, it never cancels them.
func Permanent(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1048, // column cannot be null
		1264, // out of range
		1292, // incorrect value
		1366, // incorrect string value
		1406: // data too long
		return true
	}
	return false
}

func msTime(ms int64) sql.NullTime {
	if ms <= 0 {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: time.UnixMilli(ms).UTC(), Valid: true}
}

// sortableID zero-pads a stream ID ("ms-seq") so that IDs compare as strings.
func sortableID(id string) string {
	var ms, seq uint64
	fmt.Sscanf(id, "%d-%d", &ms, &seq)
	return fmt.Sprintf("%020d-%019d", ms, seq)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 { // do not cut a UTF-8 sequence
		n--
	}
	return s[:n]
}
