package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

func stock(ctx context.Context, e *env, args []string) error {
	const about = `Subcommands:
  set ITEM QUANTITY   make the stock exactly QUANTITY (creates the item; -if-new: only then)
  add ITEM DELTA      change the stock by DELTA (negative takes units off sale)
  get ITEM            print the remaining stock (with -json: stock and rules)
  close ITEM          close the item's sale for good: purchases and stock changes are refused
                      from then on, and its per-order keys are deleted once its reservations
                      are settled (by the retainer of serve and project)
Every change is appended to the ledger as a stock event. A change that gives units to an item
with none puts it back on sale after the sold-out lease (-sold-out-lease): the command returns
then, and says so, so that buyers can buy once it has returned.`
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(e.stderr, "Usage: flashsale stock set|add|get|close [flags] ITEM [QUANTITY]\n\n%s\n", about)
		if len(args) == 0 {
			return usageError{"stock: missing subcommand"}
		}
		return flag.ErrHelp
	}
	sub := args[0]
	var argNames string
	switch sub {
	case "set", "add":
		argNames = "ITEM QUANTITY"
	case "get", "close":
		argNames = "ITEM"
	default:
		return usageError{fmt.Sprintf("stock: unknown subcommand %q (want set, add, get or close)", sub)}
	}
	c, err := parseStockFlags(e, args, argNames, about)
	if err != nil {
		return err
	}
	l, closeLedger, err := c.rf.open(ctx)
	if err != nil {
		return err
	}
	defer closeLedger()
	switch sub {
	case "close":
		id, err := l.CloseItem(ctx, c.item)
		if err != nil {
			return fmt.Errorf("stock close %s: %w", c.item, err)
		}
		fmt.Fprintf(e.stdout, "%s closed (event %d/%s)\n", c.item, l.Keys().Partition(c.item), id)
		return nil
	case "get":
		it, err := l.Item(ctx, c.item)
		if err != nil {
			return fmt.Errorf("stock get %s: %w", c.item, err)
		}
		return printItem(e, it, *c.jsonOut)
	}
	r, err := l.ChangeStock(ctx, c.item, c.ch)
	if errors.Is(err, ledger.ErrItemExists) {
		fmt.Fprintf(e.stdout, "%s stock %d (exists, left as it is)\n", c.item, r.Stock)
		return nil
	}
	if err != nil {
		return fmt.Errorf("stock %s %s: %w", sub, c.item, err)
	}
	if !r.ReopenAt.IsZero() {
		fmt.Fprintf(e.stdout, "%s stock %d (back on sale since %s, after the sold-out lease)\n", c.item, r.Stock, r.ReopenAt.UTC().Format("15:04:05.000"))
		return nil
	}
	fmt.Fprintf(e.stdout, "%s stock %d\n", c.item, r.Stock)
	return nil
}

// stockCmd is one stock subcommand as its flags and arguments give it.
type stockCmd struct {
	rf      redisFlags
	item    string
	ch      ledger.StockChange // set and add
	jsonOut *bool              // get
}

// parseStockFlags defines and reads the flags and arguments of stock subcommand args[0],
// which takes argNames.
func parseStockFlags(e *env, args []string, argNames, about string) (*stockCmd, error) {
	sub := args[0]
	f := e.flags("stock "+sub, argNames, about)
	c := &stockCmd{rf: f.redis()}
	c.rf.create = sub == "set" // add and get need an existing ledger
	var limit, start, end, payWithin, drawAt, drawSeed *string
	var ifNew *bool
	switch sub {
	case "get":
		c.jsonOut = f.Bool("json", false, "print the item as JSON")
	case "set", "add":
		limit = f.String("limit", "", "per-user limit (0 = none; empty keeps the current one)")
		start = f.String("start", "", "sale start, RFC 3339 (\"none\" = open; empty keeps the current one)")
		end = f.String("end", "", "sale end, RFC 3339 (\"none\" = never; empty keeps the current one)")
		payWithin = f.String("pay-within", "", "time a buyer has to pay a new order, e.g. 15m, before its units go back on sale (0 = no payment needed; empty keeps the current one)")
	}
	if sub == "set" {
		ifNew = f.Bool("if-new", false, "only for an item that has no stock yet (a restart then never resets a running sale)")
		drawAt = f.String("draw-at", "", "sell by a draw at this time, RFC 3339: purchases until then register entries (needs -draw-seed-file and -pay-within)")
		drawSeed = f.String("draw-seed-file", "", "file holding the draw's secret seed; only its SHA-256 is published")
	}
	if err := f.parse(args[1:]); err != nil {
		return nil, err
	}
	want := 2
	if sub == "get" || sub == "close" {
		want = 1
	}
	if f.NArg() != want {
		f.Usage()
		return nil, usageError{fmt.Sprintf("stock %s: want %s", sub, argNames)}
	}
	c.item = f.Arg(0)
	if sub != "set" && sub != "add" {
		return c, nil
	}
	n, err := strconv.ParseInt(f.Arg(1), 10, 64)
	if err != nil {
		return nil, usageError{fmt.Sprintf("stock %s: quantity %q is not an integer", sub, f.Arg(1))}
	}
	c.ch = ledger.StockChange{Op: ledger.StockOp(sub), Quantity: n}
	if ifNew != nil && *ifNew {
		c.ch.Op = ledger.StockInit
	}
	if err := stockRules(&c.ch, *limit, *start, *end, *payWithin); err != nil {
		return nil, err
	}
	if drawAt != nil && (*drawAt != "" || *drawSeed != "") {
		if err := stockDraw(&c.ch, *drawAt, *drawSeed); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// stockDraw makes ch sell by a draw at drawAt (-draw-at), committed to the seed in the file
// drawSeed (-draw-seed-file).
func stockDraw(ch *ledger.StockChange, drawAt, drawSeed string) error {
	if drawAt == "" {
		return usageError{"-draw-seed-file needs -draw-at"}
	}
	t, err := time.Parse(time.RFC3339, drawAt)
	if err != nil {
		return usageError{fmt.Sprintf("-draw-at %q: want RFC 3339, e.g. 2026-12-01T10:00:00Z", drawAt)}
	}
	seed, err := readSeed(drawSeed)
	if err != nil {
		return err
	}
	ch.DrawAt, ch.DrawCommit = &t, ledger.SeedCommitment(seed)
	return nil
}

// stockRules sets the rules of ch from the flags -limit, -start, -end and -pay-within (each
// "" keeps the current rule).
func stockRules(ch *ledger.StockChange, limit, start, end, payWithin string) error {
	if limit != "" {
		n, err := strconv.ParseInt(limit, 10, 64)
		if err != nil {
			return usageError{fmt.Sprintf("-limit %q is not an integer", limit)}
		}
		ch.Limit = &n
	}
	if payWithin != "" {
		d, err := time.ParseDuration(payWithin)
		if err != nil {
			return usageError{fmt.Sprintf("-pay-within %q is not a duration such as 15m", payWithin)}
		}
		ch.PayWithin = &d
	}
	var err error
	if ch.Start, err = parseWindow("start", start); err != nil {
		return err
	}
	if ch.End, err = parseWindow("end", end); err != nil {
		return err
	}
	return nil
}

// printItem prints it for stock get: its stock, or with asJSON the item and its rules.
func printItem(e *env, it ledger.Item, asJSON bool) error {
	if asJSON {
		out := map[string]any{"item_id": it.ItemID, "stock": it.Stock, "per_user_limit": it.Limit}
		if !it.Start.IsZero() {
			out["starts_at"] = it.Start
		}
		if !it.End.IsZero() {
			out["ends_at"] = it.End
		}
		if it.PayWithin > 0 {
			out["pay_within"] = it.PayWithin.String()
		}
		if !it.DrawAt.IsZero() {
			out["draw_at"], out["draw_commitment"] = it.DrawAt, it.DrawCommit
			if it.DrawSeed != "" {
				out["draw_seed"] = it.DrawSeed
			}
		}
		if it.Closed {
			out["status"] = "closed"
		}
		return json.NewEncoder(e.stdout).Encode(out)
	}
	fmt.Fprintln(e.stdout, it.Stock)
	return nil
}

// parseWindow reads a -start/-end flag: "" keeps (nil), "none" clears (zero time).
func parseWindow(name, v string) (*time.Time, error) {
	switch v {
	case "":
		return nil, nil
	case "none", "0":
		return &time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, usageError{fmt.Sprintf("-%s %q: want RFC 3339, e.g. 2026-12-01T10:00:00Z, or none", name, v)}
	}
	if t.UnixMilli() <= 0 {
		return nil, usageError{fmt.Sprintf("-%s %q: must be after 1970-01-01T00:00:00Z (none leaves the window open)", name, v)}
	}
	return &t, nil
}
