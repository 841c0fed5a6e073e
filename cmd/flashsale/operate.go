package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

func pending(ctx context.Context, e *env, args []string) error {
	f := e.flags("pending", "", "Shows the ledger entries the projector group has read and not acknowledged:\nper partition the XPENDING summary, then the entries with their orders (an entry of several\norders: one line per order, each with the entry's ID).")
	rf := f.redis()
	item := f.String("item", "", "only entries of this item")
	consumer := f.String("consumer", "", "only entries held by this consumer")
	minIdle := f.Duration("min-idle", 0, "only entries idle at least this long")
	limit := f.Int("limit", 100, "most lines to list (one per order of an entry of several)")
	asJSON := f.Bool("json", false, "print JSON (the same as GET /admin/pending)")
	tf := f.retention(false)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := tf.validate(); err != nil {
		return err
	}
	l, closeLedger, err := rf.open(ctx)
	if err != nil {
		return err
	}
	defer closeLedger()
	rep, err := l.Pending(ctx, projector.DefaultGroup, ledger.PendingFilter{ItemID: *item, Consumer: *consumer, MinIdle: *minIdle, Limit: *limit, Retain: *tf.retain})
	if err != nil {
		return fmt.Errorf("pending: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(rep)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tPENDING\tOLDEST\tNEWEST\tCONSUMERS")
	for _, s := range rep.Partitions {
		var cs []string
		for name, n := range s.Consumers {
			cs = append(cs, fmt.Sprintf("%s=%d", name, n))
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", s.Partition, s.Count, dash(s.Oldest), dash(s.Newest), dash(strings.Join(cs, " ")))
	}
	tw.Flush()
	printRetention(e.stdout, rep.Retention)
	defer printDead(e.stdout, rep.Dead)
	if len(rep.Entries) == 0 {
		fmt.Fprintln(e.stdout, "\nno pending entries match")
		return nil
	}
	fmt.Fprintln(e.stdout)
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONSUMER\tIDLE\tDELIVERIES\tTYPE\tORDER\tITEM\tUSER\tQTY\tAGE")
	for _, p := range rep.Entries {
		kind := p.Type
		if p.Malformed != "" {
			kind = "malformed"
		}
		fmt.Fprintf(tw, "%d/%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", p.Partition, p.StreamID, p.Consumer,
			ms(p.IdleMS), p.Deliveries, kind, dash(p.OrderID), dash(p.ItemID), dash(p.UserID), p.Quantity, ms(p.AgeMS))
	}
	tw.Flush()
	if rep.Truncated {
		fmt.Fprintf(e.stdout, "(more entries match; raise -limit)\n")
	}
	return nil
}

// printRetention shows per partition what the ledger retains and, where its trimming is held
// back past the retention window, by how much and by what.
func printRetention(w io.Writer, rs []ledger.RetainState) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION	RETAINED	FIRST	CHECKPOINT	PROJECTED	ARCHIVED	HELD BACK	BY")
	for _, r := range rs {
		held := "-"
		if r.HeldBack > 0 {
			held = r.HeldBack.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Partition, r.Length, dash(r.First), dash(r.Checkpoint),
			dash(r.Projected), dash(r.Archived), held, dash(r.HeldBy))
	}
	tw.Flush()
}

// printDead lists the dead entries: acknowledged, never projected nor restocked.
func printDead(w io.Writer, dead []ledger.DeadEntry) {
	if len(dead) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%d dead entries (acknowledged without being projected or restocked):\n", len(dead))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tORDER\tITEM\tQTY\tREASON")
	for _, d := range dead {
		fmt.Fprintf(tw, "%d/%s\t%s\t%s\t%s\t%d\t%s\n", d.Partition, d.StreamID, dash(d.Type), dash(d.OrderID), dash(d.ItemID), d.Quantity, d.Reason)
	}
	tw.Flush()
}

func audit(ctx context.Context, e *env, args []string) error {
	f := e.flags("audit", "", "Checks the books: per item, the ledger's events folded in order (from each partition's latest\ncheckpoint) against the Redis stock counter, and MySQL against the ledger (per item the\nprojector's item_totals; one by one the orders of the retained ledger). With -full, also reads\nevery MySQL order row (checked in sum up to the checkpoints, and against item_totals) and\nrefolds the whole history from the archive, checking every checkpoint against it. Exit 0 when\nclean, 1 on any violation, 2 when it could not run.")
	rf := f.redis()
	dsn := f.mysqlDSN()
	asJSON := f.Bool("json", false, "print the report as JSON")
	full := f.Bool("full", false, "also read every MySQL order row, and refold the whole history from the archive and check every checkpoint against it")
	archiveURL := f.archiveURL(" (read with -full)")
	if err := f.parse(args); err != nil {
		return err
	}
	cannot := func(err error) error { return exitError{2, fmt.Errorf("audit could not run: %w", err)} }
	l, db, closeAll, err := rf.openWithMySQL(ctx, *dsn)
	if err != nil {
		return cannot(err)
	}
	defer closeAll()
	if err := projector.CheckLedger(ctx, db, *rf.prefix); err != nil {
		return cannot(err)
	}
	run := projector.Audit
	if *full {
		run = projector.AuditAll
	}
	rep, err := run(ctx, l, projector.NewStore(db), projector.DefaultGroup)
	if err != nil {
		return cannot(err)
	}
	if *full {
		arch, err := openArchiveReader(ctx, *archiveURL, e.getenv, l)
		if err != nil {
			return cannot(err)
		}
		if arch == nil {
			return usageError{"audit -full: needs an archive (-archive)"}
		}
		h, vs, err := projector.AuditHistory(ctx, l, arch)
		if err != nil {
			return cannot(err)
		}
		rep.Violations = append(rep.Violations, vs...)
		if !*asJSON {
			fmt.Fprintf(e.stdout, "history: %d entries refolded from the archive and the stream, %d checkpoints checked\n\n", h.Entries, h.Checkpoints)
		}
	}
	if *asJSON {
		if err := json.NewEncoder(e.stdout).Encode(rep); err != nil {
			return cannot(err)
		}
	} else {
		printAudit(e.stdout, rep)
	}
	if !rep.Clean() {
		return exitError{1, fmt.Errorf("audit: %d violation(s)", len(rep.Violations))}
	}
	return nil
}

func printAudit(w io.Writer, rep projector.AuditReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ITEM\tPUT ON SALE\tSOLD\tRESERVED\tRESTOCKED\tRELEASED\tLEDGER STOCK\tREDIS STOCK\tMYSQL CONFIRMED\tMYSQL CANCELLED\tIN FLIGHT\t")
	for _, it := range rep.Items {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", it.ItemID, it.PutOnSale, it.Sold, it.Reserved, it.Restocked, it.Released, it.Fold, it.Stock, it.Confirmed, it.Cancelled, it.InFlight)
	}
	tw.Flush()
	if rep.Pending > 0 {
		fmt.Fprintf(w, "\n%d ledger entries not yet projected: MySQL differences of their orders count as in flight.\n", rep.Pending)
	}
	if rep.Clean() {
		fmt.Fprintln(w, "\nclean: stock + sold + reserved = put on sale for every item, and MySQL matches the ledger")
		return
	}
	fmt.Fprintf(w, "\n%d violation(s):\n", len(rep.Violations))
	for _, v := range rep.Violations {
		fmt.Fprintf(w, "  item %s", dash(v.ItemID))
		if v.OrderID != "" {
			fmt.Fprintf(w, " order %s", v.OrderID)
		}
		fmt.Fprintf(w, ": %s\n", v.What)
	}
}

func replay(ctx context.Context, e *env, args []string) error {
	f := e.flags("replay", "", "Rebuilds the MySQL projection from the ledger, every partition from its first entry (in the\narchive, then in the stream), with the projector's own idempotent writes. Without -fresh it fills in what is missing.")
	rf := f.redis()
	dsn := f.mysqlDSN()
	fresh := f.Bool("fresh", false, "empty the orders and items tables first")
	force := f.Bool("force", false, "with -fresh: run even while projectors are live")
	page := f.Int("page", 1000, "entries per read and MySQL transaction")
	archiveURL := f.archiveURL(", read before the stream; none: the stream only")
	logger := f.logger()
	if err := f.parse(args); err != nil {
		return err
	}
	log := logger()
	l, db, closeAll, err := rf.openWithMySQL(ctx, *dsn)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := projector.BindLedger(ctx, db, *rf.prefix); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	arch, err := openArchiveReader(ctx, *archiveURL, e.getenv, l)
	if err != nil {
		return err
	}
	progress := plainProgress(e.stderr)
	if file, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		var bar *progressbar.ProgressBar
		progress = func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(file),
					progressbar.OptionSetDescription("replay"), progressbar.OptionShowCount(),
					progressbar.OptionShowIts(), progressbar.OptionSetItsString("entries"),
					progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
			}
			bar.Set64(done)
		}
	}
	st, err := projector.Replay(ctx, l, projector.NewStore(db), projector.ReplayOptions{Fresh: *fresh, Force: *force, PageSize: int64(*page), Progress: progress, Archive: arch})
	if live := (*projector.LiveError)(nil); errors.As(err, &live) {
		return fmt.Errorf("replay -fresh: %w; stop them first, or add -force", err)
	}
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	rate := float64(st.Entries) / max(st.Elapsed.Seconds(), 1e-9)
	fmt.Fprintf(e.stdout, "replayed %d entries (%d orders, %d restocks, %d stock changes, %d malformed skipped) in %s, %.0f entries/s\n",
		st.Entries, st.Orders, st.Restocks, st.Stocks, st.Malformed, st.Elapsed.Round(time.Millisecond), rate)
	log.Debug("replay done", "entries", st.Entries)
	return nil
}

// plainProgress prints a line per ~10% of the work, for logs and pipes.
func plainProgress(w io.Writer) func(done, total int64) {
	next := int64(0)
	return func(done, total int64) {
		if done >= next || done == total {
			fmt.Fprintf(w, "replay: %d/%d entries (%d%%)\n", done, total, 100*done/max(total, 1))
			next = done + max(total/10, 1)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ms(n int64) string { return (time.Duration(n) * time.Millisecond).String() }
