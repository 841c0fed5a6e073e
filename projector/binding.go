package projector

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	sq "github.com/Masterminds/squirrel"
)

// ErrOtherLedger means that the MySQL database holds the projection of another ledger (another
// Redis key prefix). Two ledgers in one database would mix their orders and items, and each
// one's audit would fail on the other's rows: give each ledger a database of its own.
var ErrOtherLedger = errors.New("the MySQL database projects another ledger")

// BindLedger records prefix as the ledger that db projects, when db has none recorded yet, and
// returns ErrOtherLedger when it has another. Writers of the projection (the projector,
// replay) call it before they write.
func BindLedger(ctx context.Context, db *sql.DB, prefix string) error {
	q, args := sq.Insert("ledger_binding").Options("IGNORE").Columns("id", "prefix").Values(1, prefix).MustSql()
	if _, err := db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("record the projected ledger: %w (has 'flashsale migrate' run?)", err)
	}
	return CheckLedger(ctx, db, prefix)
}

// CheckLedger returns ErrOtherLedger when db records a ledger other than prefix; it writes
// nothing. A database that records none passes.
func CheckLedger(ctx context.Context, db *sql.DB, prefix string) error {
	q, args := sq.Select("prefix").From("ledger_binding").Where(sq.Eq{"id": 1}).MustSql()
	var got string
	err := db.QueryRowContext(ctx, q, args...).Scan(&got)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("read the projected ledger: %w (has 'flashsale migrate' run?)", err)
	case got != prefix:
		return fmt.Errorf("%w: it holds ledger prefix %q, not %q; give each ledger a database of its own", ErrOtherLedger, got, prefix)
	}
	return nil
}
