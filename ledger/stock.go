package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// StockOp says how a StockChange treats the stock counter.
type StockOp string

// The stock operations.
const (
	// StockSet makes the stock exactly Quantity.
	StockSet StockOp = "set"
	// StockAdd changes the stock by Quantity (negative takes units off sale).
	StockAdd StockOp = "add"
	// StockInit sets the stock like StockSet, but only for an item that has none yet; for
	// an existing item it changes nothing and returns ErrItemExists. Its event says set.
	StockInit StockOp = "init"
	// StockClose is the op of the event that closed an item's sale (Ledger.Close); the
	// counter is unchanged (Quantity 0, Stock the units left).
	StockClose StockOp = "close"
)

// MaxStock bounds the stock of one item.
const MaxStock = 1_000_000_000

// StockChange is one administrative change of an item. Nil rule fields keep the current rule.
type StockChange struct {
	Op       StockOp
	Quantity int64
	// Limit is the most units one user may buy; 0 means no limit.
	Limit *int64
	// Start and End bound the sale window; the zero time means open on that side.
	Start, End *time.Time
	// PayWithin is how long a new order stays reserved waiting for its payment before it
	// expires and its units go back on sale; 0 means an order needs no payment.
	PayWithin *time.Duration
	// DrawAt, with DrawCommit, makes the item a draw item (see RunDraw): entries are taken
	// until DrawAt, then the stock is drawn among them. DrawCommit is the hex SHA-256 of the
	// secret seed. Nil keeps the item as it is; a draw needs a pay-within rule.
	DrawAt     *time.Time
	DrawCommit string
}

// Item is an item as the ledger knows it.
type Item struct {
	ItemID string
	// Stock is the number of units left.
	Stock int64
	// Limit is the most units one user may buy; 0 means no limit.
	Limit int64
	// Start and End bound the sale window; zero means open on that side.
	Start, End time.Time
	// PayWithin is the payment deadline of a new order; 0 means no payment is needed.
	PayWithin time.Duration
	// DrawAt is the time of the item's draw (zero: not a draw item); DrawCommit the seed's
	// commitment; DrawSeed the seed (hex) once the draw has revealed it.
	DrawAt               time.Time
	DrawCommit, DrawSeed string
	// Closed is set once the item's sale was closed for good (Ledger.Close).
	Closed bool
}

// MaxPayWithin bounds an item's pay-within rule.
const MaxPayWithin = 7 * 24 * time.Hour

// StockResult is what a stock change did.
type StockResult struct {
	// Stock is the stock after the change.
	Stock int64
	// ReopenAt is when (on this process's clock, with the lease's margin) an item that had no
	// stock became buyable again: the change gave it units, or found its reopening still
	// ahead. Zero when buyers could buy at once.
	ReopenAt time.Time
}

// SetStock is ChangeStock returning only the stock.
func (l *Ledger) SetStock(ctx context.Context, item string, ch StockChange) (int64, error) {
	r, err := l.ChangeStock(ctx, item, ch)
	return r.Stock, err
}

// ChangeStock applies ch to item and appends the stock event that records it, atomically. A
// change that gives units to an item with none delays its sale by the sold-out lease (see
// Config.SoldOutLease): ChangeStock returns once that reopening is past, so that buyers can buy
// when it returns (if ctx ends first, it returns ctx's error; the change is made).
// Errors: ErrInvalid (also a sale window whose end, with the rules already in force, would not
// be after its start), ErrUnknownItem (an add on an item never set), ErrNegativeStock,
// ErrTooMuchStock (the result would exceed MaxStock), ErrItemExists (init), ErrUnavailable.
func (l *Ledger) ChangeStock(ctx context.Context, item string, ch StockChange) (StockResult, error) {
	n, wait, err := l.setStock(ctx, item, ch)
	r := StockResult{Stock: n}
	if err != nil || wait <= 0 {
		return r, err
	}
	// wait is measured on Redis's clock; this process's may run slower by the lease's margin.
	wait += wait / leaseMarginDiv
	r.ReopenAt = time.Now().Add(wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return r, nil
	case <-ctx.Done():
		return r, fmt.Errorf("wait for the reopening of %s: %w", item, ctx.Err())
	}
}

// setStock runs the stock script; wait is how long until the item's reopening (0: none ahead).
func (l *Ledger) setStock(ctx context.Context, item string, ch StockChange) (stock int64, wait time.Duration, err error) {
	if err := ValidateItemID(item); err != nil {
		return 0, 0, err
	}
	switch {
	case item == "." || item == "..":
		return 0, 0, invalid("item_id must not be %q", item)
	case ch.Op != StockSet && ch.Op != StockAdd && ch.Op != StockInit:
		return 0, 0, invalid("stock op %q: want set, add or init", ch.Op)
	case ch.Op != StockAdd && (ch.Quantity < 0 || ch.Quantity > MaxStock):
		return 0, 0, invalid("stock must be between 0 and %d", MaxStock)
	case ch.Op == StockAdd && (ch.Quantity < -MaxStock || ch.Quantity > MaxStock):
		return 0, 0, invalid("stock change must be between -%d and %d", MaxStock, MaxStock)
	case ch.Limit != nil && (*ch.Limit < 0 || *ch.Limit > MaxStock):
		return 0, 0, invalid("per-user limit must be between 0 and %d", MaxStock)
	case beforeEpoch(ch.Start) || beforeEpoch(ch.End):
		return 0, 0, invalid("sale start and end must be after 1970-01-01T00:00:00Z")
	case ch.PayWithin != nil && (*ch.PayWithin < 0 || *ch.PayWithin > MaxPayWithin || *ch.PayWithin%time.Millisecond != 0):
		return 0, 0, invalid("pay-within must be whole milliseconds between 0 and %s", MaxPayWithin)
	}
	drawAt := ""
	if ch.DrawAt != nil {
		if err := validateDraw(ch); err != nil {
			return 0, 0, err
		}
		drawAt = strconv.FormatInt(ch.DrawAt.UnixMilli(), 10)
	}
	limit, start, end, payWithin := "", windowArg(ch.Start), windowArg(ch.End), ""
	if ch.Limit != nil {
		limit = strconv.FormatInt(*ch.Limit, 10)
	}
	if ch.PayWithin != nil {
		payWithin = strconv.FormatInt(ch.PayWithin.Milliseconds(), 10)
	}
	if ch.Start != nil && ch.End != nil && !ch.Start.IsZero() && !ch.End.IsZero() && !ch.End.After(*ch.Start) {
		return 0, 0, invalid("sale end must be after its start")
	}
	k := l.keys
	keys := []string{k.Stock(item), k.Rules(item), k.Events(k.Partition(item)), k.Items(k.Partition(item))}
	var v any
	if l.repl.min > 0 {
		v, err = l.repl.scriptWaited(ctx, l.rdb, stockScript, keys, item, string(ch.Op), ch.Quantity, limit, start, end, l.leaseMS, MaxStock, payWithin, drawAt, ch.DrawCommit)
	} else {
		v, err = stockScript.Run(ctx, l.rdb, keys, item, string(ch.Op), ch.Quantity, limit, start, end, l.leaseMS, MaxStock, payWithin, drawAt, ch.DrawCommit).Result()
	}
	if err != nil {
		return 0, 0, redisErr("set stock", err)
	}
	a, code, err := scriptReply(v, 2)
	if err != nil {
		return 0, 0, err
	}
	stock, _ = a[1].(int64)
	switch code {
	case 0:
		var ms int64
		if len(a) > 2 {
			ms, _ = a[2].(int64)
		}
		return stock, time.Duration(ms) * time.Millisecond, nil
	case 1:
		return 0, 0, ErrUnknownItem
	case 2:
		return stock, 0, ErrNegativeStock
	case 3:
		return stock, 0, ErrItemExists
	case 4:
		return stock, 0, ErrTooMuchStock
	case 5:
		return stock, 0, invalid("sale end must be after its start (with the window in force)")
	case 6:
		return stock, 0, ErrItemClosed
	case 7:
		return stock, 0, invalid("the draw time has come: the draw's time and seed commitment can no longer change")
	}
	return 0, 0, fmt.Errorf("stock script: unknown code %d", code)
}

// beforeEpoch reports whether t is a set time at or before the Unix epoch: such a time would
// be stored as 0 or less, which the scripts read as "open".
func beforeEpoch(t *time.Time) bool {
	return t != nil && !t.IsZero() && t.UnixMilli() <= 0
}

func windowArg(t *time.Time) string {
	switch {
	case t == nil:
		return ""
	case t.IsZero():
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// Item returns item's stock and rules, or ErrUnknownItem.
func (l *Ledger) Item(ctx context.Context, item string) (Item, error) {
	if err := ValidateItemID(item); err != nil {
		return Item{}, err
	}
	pipe := l.rdb.Pipeline()
	stockCmd := pipe.Get(ctx, l.keys.Stock(item))
	rulesCmd := pipe.HMGet(ctx, l.keys.Rules(item), "limit", "start_ms", "end_ms", "pay_within_ms", "closed", "draw_at_ms", "draw_commit", "draw_seed")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Item{}, redisErr("read item", err)
	}
	stock, err := stockCmd.Int64()
	if errors.Is(err, redis.Nil) {
		return Item{}, ErrUnknownItem
	} else if err != nil {
		return Item{}, fmt.Errorf("read item stock: %w", err)
	}
	rules := rulesCmd.Val()
	it := Item{ItemID: item, Stock: stock, Limit: intField(rules[0]), PayWithin: time.Duration(intField(rules[3])) * time.Millisecond,
		Closed: intField(rules[4]) == 1}
	if ms := intField(rules[1]); ms > 0 {
		it.Start = time.UnixMilli(ms)
	}
	if ms := intField(rules[2]); ms > 0 {
		it.End = time.UnixMilli(ms)
	}
	if ms := intField(rules[5]); ms > 0 {
		it.DrawAt = time.UnixMilli(ms)
	}
	it.DrawCommit, _ = rules[6].(string)
	it.DrawSeed, _ = rules[7].(string)
	return it, nil
}

func intField(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
