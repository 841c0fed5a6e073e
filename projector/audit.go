package projector

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

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
	// Closed is set once the item's sale was closed (a stock event with op close).
	Closed bool `json:"closed,omitempty"`
	// CheckpointLive counts the units of the live orders at or before the partition's
	// checkpoint (their entries may be trimmed): MySQL must hold as many, in sum, since they
	// cannot be compared one by one.
	CheckpointLive int64 `json:"checkpoint_live,omitempty"`

	// The rules of the item's last stock event and the orders placed, kept for checkpoints.
	limit, startMS, endMS, payWithinMS, orders int64
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
	// OrderRows counts the MySQL order rows the audit read: every row with AuditAll; with
	// Audit, those after each partition's checkpoint and those of the orders the retained
	// ledger names (see readBounded), never the whole table.
	OrderRows int64 `json:"mysql_order_rows_read"`
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
		return ledger.StatusCancelled
	case o.state != "":
		return o.state
	}
	return ledger.StatusConfirmed
}

// live reports whether the order holds its request_id (not cancelled nor expired).
func (o *ledgerOrder) live() bool {
	w := o.want()
	return w != ledger.StatusCancelled && w != ledger.StatusExpired
}

type mysqlOrder struct {
	item, request, status string
	quantity              int64
	// tally is the status item_totals counts the row under, "" for none.
	tally string
}

// Audit checks the books of every item the ledger has events for: the ledger fold against
// the Redis stock counter, and MySQL against the ledger (per item, item_totals against the
// fold; one by one, the rows of the orders the retained ledger holds: missing, extra, with
// another status or quantity, and live duplicates of one request); every dead entry
// (Ledger.Dead) is a violation too. Its MySQL reads are bounded by live work: it never reads
// the whole orders table (AuditAll does).
//
// It reads one consistent cut, so that it can run while a sale goes on: per partition, one
// script call (Ledger.Snapshot) returns the stream's last ID with the stock counters and the
// group's position at that instant; the fold stops at that ID, and MySQL rows of orders after
// it are left out. MySQL is compared strictly only when every entry up to the cut had been
// projected (Pending is 0).
func Audit(ctx context.Context, l *ledger.Ledger, store *Store, group string) (AuditReport, error) {
	return runAudit(ctx, l, store, group, false)
}

// AuditAll is Audit reading every MySQL order row: the rows at or before each partition's
// checkpoint are compared in sum per item with the checkpoint, and item_totals with the rows
// (a row that item_totals counts under another status than its own, or does not count, was
// changed or written by hand). `flashsale audit -full` runs it.
func AuditAll(ctx context.Context, l *ledger.Ledger, store *Store, group string) (AuditReport, error) {
	return runAudit(ctx, l, store, group, true)
}

func runAudit(ctx context.Context, l *ledger.Ledger, store *Store, group string, all bool) (AuditReport, error) {
	a := &auditor{
		l: l, store: store, group: group, all: all,
		rep:   AuditReport{Items: []ItemAudit{}, Violations: []Violation{}},
		items: map[string]*ItemAudit{}, orders: map[string]*ledgerOrder{},
	}
	if err := a.cut(ctx); err != nil {
		return a.rep, err
	}
	read := a.readBounded
	if all {
		read = a.readAll
	}
	if err := read(ctx); err != nil {
		return a.rep, err
	}
	if all {
		a.checkpointRows()
	}
	a.compareTotals()
	a.compareRows()
	a.liveOrders()
	a.holders()
	if err := a.deadEntries(ctx); err != nil {
		return a.rep, err
	}
	return a.report(), nil
}

// auditor is one run of Audit: what each phase read, and the report the phases fill.
type auditor struct {
	l     *ledger.Ledger
	store *Store
	group string
	all   bool // AuditAll: every order row is read
	rep   AuditReport

	items  map[string]*ItemAudit
	orders map[string]*ledgerOrder // the ledger's orders, by order ID
	rows   map[string]mysqlOrder   // MySQL's orders up to the cut, by order ID
	// cuts and checkpoints are each partition's snapshot position and checkpoint.
	cuts, checkpoints []string
	settled           bool                 // every entry up to the cut was projected
	live              map[[2]string]string // (item, request) -> the live order holding it
	// totals is item_totals less the rows past the cut; held are the (item, request) pairs
	// of conflict-cancelled orders that a live MySQL row holds.
	totals totals
	held   map[[2]string]bool
}

// item returns the audit of item id, creating it.
func (a *auditor) item(id string) *ItemAudit {
	if a.items[id] == nil {
		a.items[id] = &ItemAudit{ItemID: id}
	}
	return a.items[id]
}

// violation records v.
func (a *auditor) violation(v Violation) { a.rep.Violations = append(a.rep.Violations, v) }

// flag records a difference between MySQL and the ledger: a violation once settled, else
// units in flight.
func (a *auditor) flag(it *ItemAudit, orderID string, quantity int64, what string) {
	if a.settled {
		a.violation(Violation{it.ItemID, orderID, what})
	} else {
		it.InFlight += quantity
	}
}

// cut folds every partition up to one snapshot each (auditPartition), and checks each item's
// Redis stock counter against its fold.
func (a *auditor) cut(ctx context.Context) error {
	keys := a.l.Keys()
	a.cuts = make([]string, keys.Partitions())
	a.checkpoints = make([]string, keys.Partitions())
	for p := range keys.Partitions() {
		pa, err := auditPartition(ctx, a.l, p, a.group)
		if err != nil {
			return err
		}
		snap := pa.snap
		a.cuts[p], a.checkpoints[p] = snap.LastID, pa.checkpoint
		a.rep.Pending += pa.pending
		a.rep.Violations = append(a.rep.Violations, pa.violations...)
		maps.Copy(a.orders, pa.orders)
		for id, it := range pa.items {
			a.items[id] = it
			stock, ok := snap.Stock[id]
			if !ok {
				a.violation(Violation{ItemID: id, What: "redis stock counter missing"})
				continue
			}
			it.Stock = stock
			if it.Stock != it.Fold {
				a.violation(Violation{ItemID: id,
					What: fmt.Sprintf("redis stock %d differs from the ledger's %d (put on sale %d, sold %d)", it.Stock, it.Fold, it.PutOnSale, it.Sold)})
			}
			if it.Stock < 0 {
				a.violation(Violation{ItemID: id, What: fmt.Sprintf("oversold: stock %d", it.Stock)})
			}
		}
	}
	return nil
}

// countRow adds row r to its item's confirmed or cancelled units.
func (a *auditor) countRow(r mysqlOrder) {
	it := a.item(r.item)
	switch r.status {
	case ledger.StatusConfirmed, ledger.StatusPaid, ledger.StatusReserved:
		it.Confirmed += r.quantity
	case ledger.StatusCancelled, ledger.StatusExpired:
		it.Cancelled += r.quantity
	}
}

// checkpointRows compares the orders at or before their partition's checkpoint in sum per
// item (their entries may be trimmed), and leaves to compareRows only those the ledger still
// holds one by one (still reserved there).
func (a *auditor) checkpointRows() {
	checkpointLive := map[string]int64{}
	for id, r := range a.rows {
		p, sid, err := ledger.ParseOrderID(id)
		if err != nil || p >= len(a.checkpoints) || a.checkpoints[p] == "" || ledger.CompareIDs(sid, a.checkpoints[p]) > 0 {
			continue
		}
		if r.status != ledger.StatusCancelled && r.status != ledger.StatusExpired && !drawWaiting(r.status) {
			checkpointLive[r.item] += r.quantity
		}
		if a.orders[id] == nil {
			a.countRow(r)
			delete(a.rows, id)
		}
	}
	for _, it := range a.items {
		if got := checkpointLive[it.ItemID]; a.settled && got != it.CheckpointLive {
			a.violation(Violation{ItemID: it.ItemID,
				What: fmt.Sprintf("MySQL holds %d live units of orders up to the checkpoint, the ledger %d", got, it.CheckpointLive)})
		}
	}
	for id, got := range checkpointLive {
		if a.items[id] == nil && got != 0 {
			a.violation(Violation{ItemID: id,
				What: fmt.Sprintf("MySQL holds %d live units of orders up to the checkpoint of an item the ledger does not hold", got)})
		}
	}
}

// compareRows compares each MySQL row with the ledger's order.
func (a *auditor) compareRows() {
	for id, r := range a.rows {
		if a.all {
			a.countRow(r)
		}
		it := a.item(r.item)
		o := a.orders[id]
		switch {
		case o == nil:
			a.violation(Violation{r.item, id, "order in MySQL is not in the ledger"})
		case o.item != r.item || o.quantity != r.quantity || o.request != r.request:
			a.violation(Violation{r.item, id, fmt.Sprintf("MySQL row (item %s, request %q, quantity %d) differs from the ledger (item %s, request %q, quantity %d)", r.item, r.request, r.quantity, o.item, o.request, o.quantity)})
		case o.restocked && r.status != ledger.StatusCancelled:
			a.flag(it, id, r.quantity, "restocked in the ledger but "+r.status+" in MySQL")
		case !o.restocked && r.status != o.want():
			a.flag(it, id, r.quantity, o.want()+" in the ledger but "+r.status+" in MySQL")
		}
	}
}

// liveOrders checks the ledger's orders: each in MySQL, units given back at most once, and
// one live order per request.
func (a *auditor) liveOrders() {
	a.live = map[[2]string]string{}
	for id, o := range a.orders {
		if _, ok := a.rows[id]; !ok {
			a.flag(a.item(o.item), id, o.quantity, "in the ledger but not in MySQL")
		}
		if o.returns > 1 {
			a.violation(Violation{o.item, id, fmt.Sprintf("units given back %d times", o.returns)})
		}
		if !o.live() {
			continue
		}
		key := [2]string{o.item, o.request}
		if other, ok := a.live[key]; ok {
			a.flag(a.item(o.item), id, o.quantity, fmt.Sprintf("request %q holds two live orders (%s and %s)", o.request, other, id))
		}
		a.live[key] = id
	}
}

// holders checks that an order cancelled because its request_id held another live order has
// that holder, byte for byte: MySQL must not have taken two distinct request_ids for one.
func (a *auditor) holders() {
	holders := maps.Clone(a.held)
	if holders == nil {
		holders = map[[2]string]bool{}
	}
	for key := range a.live {
		holders[key] = true
	}
	for _, r := range a.rows {
		if r.status != ledger.StatusCancelled && r.status != ledger.StatusExpired {
			holders[[2]string{r.item, r.request}] = true
		}
	}
	for id, o := range a.orders {
		if o.restocked && o.reason == ReasonRequestConflict && !holders[[2]string{o.item, o.request}] {
			a.violation(Violation{o.item, id,
				fmt.Sprintf("conflict-cancel without holder: request %q holds no other live order", o.request)})
		}
	}
}

// deadEntries reports every dead ledger entry.
func (a *auditor) deadEntries(ctx context.Context) error {
	dead, err := a.l.Dead(ctx, "")
	if err != nil {
		return err
	}
	for _, d := range dead {
		a.violation(Violation{d.ItemID, d.OrderID,
			fmt.Sprintf("dead ledger entry %d/%s, acknowledged without being projected or restocked: %s", d.Partition, d.StreamID, d.Reason)})
	}
	return nil
}

// report returns the report, items and violations in order.
func (a *auditor) report() AuditReport {
	for _, it := range a.items {
		a.rep.Items = append(a.rep.Items, *it)
	}
	slices.SortFunc(a.rep.Items, func(x, y ItemAudit) int { return strings.Compare(x.ItemID, y.ItemID) })
	slices.SortFunc(a.rep.Violations, func(x, y Violation) int {
		if c := strings.Compare(x.ItemID, y.ItemID); c != 0 {
			return c
		}
		return strings.Compare(x.OrderID, y.OrderID)
	})
	return a.rep
}

// dropPastCut removes from rows the orders appended after their partition's cut, and returns
// them: they are in flight, not in the books read. A row past the stream's end as read after
// MySQL, though, was never in the ledger (Redis lost it, or it was written by hand) and stays,
// to be reported.
func dropPastCut(ctx context.Context, l *ledger.Ledger, group string, rows map[string]mysqlOrder, cuts []string) ([]mysqlOrder, error) {
	tops := map[int]string{}
	var dropped []mysqlOrder
	for id, r := range rows {
		p, sid, err := ledger.ParseOrderID(id)
		if err != nil || p >= len(cuts) || ledger.CompareIDs(sid, cuts[p]) <= 0 {
			continue
		}
		top, ok := tops[p]
		if !ok {
			snap, err := l.Snapshot(ctx, p, group, nil)
			if err != nil {
				return nil, err
			}
			top, tops[p] = snap.LastID, snap.LastID
		}
		if ledger.CompareIDs(sid, top) <= 0 {
			delete(rows, id)
			dropped = append(dropped, r)
		}
	}
	return dropped, nil
}

// partAudit is one partition's fold: its items, its orders (those after the checkpoint and
// those still reserved at it), what it found wrong and what was not projected at the cut.
type partAudit struct {
	items      map[string]*ItemAudit
	orders     map[string]*ledgerOrder
	violations []Violation
	pending    int64
	snap       ledger.Snapshot
	checkpoint string
	// entries counts the entries folded (since the ledger began).
	entries int64
}

// auditPartition folds partition p from its latest checkpoint through the retained stream up
// to one snapshot's last ID. A trim that moves the checkpoint meanwhile may have removed
// entries the fold had still to read: the fold is then done again from the new checkpoint.
func auditPartition(ctx context.Context, l *ledger.Ledger, p int, group string) (*partAudit, error) {
	for range 10 {
		c, err := l.LoadCheckpoint(ctx, p)
		if err != nil {
			return nil, err
		}
		pa, err := foldPartition(ctx, l, p, group, c)
		if err != nil {
			return nil, err
		}
		id, err := l.CheckpointID(ctx, p)
		if err != nil {
			return nil, err
		}
		if id == c.ID {
			return pa, nil
		}
	}
	return nil, fmt.Errorf("audit partition %d: the checkpoint moved at every attempt", p)
}

// fromCheckpoint starts a partition's fold at checkpoint c.
func fromCheckpoint(c ledger.Checkpoint) *partAudit {
	pa := &partAudit{items: map[string]*ItemAudit{}, orders: map[string]*ledgerOrder{}, checkpoint: c.ID, entries: c.Entries}
	for id, ci := range c.Items {
		pa.items[id] = &ItemAudit{ItemID: id, PutOnSale: ci.PutOnSale, Sold: ci.Sold, Reserved: ci.Reserved,
			Restocked: ci.Restocked, Released: ci.Released, Fold: ci.Stock, Closed: ci.Closed,
			CheckpointLive: ci.Sold + ci.Reserved,
			limit:          ci.Limit, startMS: ci.StartMS, endMS: ci.EndMS, payWithinMS: ci.PayWithinMS, orders: ci.Orders}
	}
	for id, o := range c.Open {
		state := ledger.StateReserved
		if o.State != "" {
			state = o.State // a draw entry waiting
		}
		pa.orders[id] = &ledgerOrder{item: o.ItemID, request: o.RequestID, quantity: o.Quantity, state: state}
	}
	for _, v := range c.Violations {
		pa.violations = append(pa.violations, Violation{v.ItemID, v.OrderID, v.What})
	}
	return pa
}

// item returns the fold's item id, new if need be.
func (pa *partAudit) item(id string) *ItemAudit {
	if pa.items[id] == nil {
		pa.items[id] = &ItemAudit{ItemID: id}
	}
	return pa.items[id]
}

// applyEntry folds one entry of partition p: its events, as a reader returns them (see
// ledger.ByEntry).
func (pa *partAudit) applyEntry(keys ledger.Keys, p int, entry []ledger.Event) {
	pa.entries++
	for _, e := range entry {
		pa.apply(keys, p, e)
	}
}

// apply folds one event of partition p.
func (pa *partAudit) apply(keys ledger.Keys, p int, e ledger.Event) {
	if e.Malformed != nil {
		return
	}
	if ledger.ValidateItemID(e.ItemID) != nil || keys.Partition(e.ItemID) != p {
		// No script writes such an entry, and no counter of p holds its units.
		pa.violations = append(pa.violations, Violation{e.ItemID, e.OrderID,
			fmt.Sprintf("%s entry %s of partition %d names an item that is not of this partition", e.Type, e.StreamID, p)})
		return
	}
	rep := AuditReport{}
	foldEvent(&rep, pa.item(e.ItemID), e, pa.orders, pa.checkpoint)
	pa.violations = append(pa.violations, rep.Violations...)
}

// checkpoint returns the fold as a checkpoint through stream ID id: the items' books and the
// orders still reserved.
func (pa *partAudit) checkpointAt(p int, id string) ledger.Checkpoint {
	c := ledger.Checkpoint{Partition: p, ID: id, Items: map[string]ledger.CheckpointItem{}, Open: map[string]ledger.CheckpointOrder{}, Entries: pa.entries}
	for iid, it := range pa.items {
		c.Items[iid] = ledger.CheckpointItem{PutOnSale: it.PutOnSale, Sold: it.Sold, Reserved: it.Reserved,
			Restocked: it.Restocked, Released: it.Released, Stock: it.Fold, Closed: it.Closed,
			Limit: it.limit, StartMS: it.startMS, EndMS: it.endMS, PayWithinMS: it.payWithinMS, Orders: it.orders}
	}
	for oid, o := range pa.orders {
		if o.state == ledger.StateReserved && !o.restocked && o.returns == 0 {
			c.Open[oid] = ledger.CheckpointOrder{ItemID: o.item, RequestID: o.request, Quantity: o.quantity}
		} else if drawWaiting(o.state) && !o.restocked {
			c.Open[oid] = ledger.CheckpointOrder{ItemID: o.item, RequestID: o.request, Quantity: o.quantity, State: o.state}
		}
	}
	for _, v := range pa.violations {
		c.Violations = append(c.Violations, ledger.CheckpointViolation{ItemID: v.ItemID, OrderID: v.OrderID, What: v.What})
	}
	return c
}

// foldPartition folds partition p's events after checkpoint c up to one snapshot's last ID,
// and counts what was not projected at that instant. The snapshot reads the counters of the
// items the fold has met; when the fold meets more (new items on sale meanwhile), it takes
// another, later one and folds on to it.
func foldPartition(ctx context.Context, l *ledger.Ledger, p int, group string, c ledger.Checkpoint) (*partAudit, error) {
	keys := l.Keys()
	pa := fromCheckpoint(c)
	seen := map[string]bool{} // items of p the fold has met
	for id := range pa.items {
		seen[id] = true
	}
	// For the undelivered count: entries folded, and the IDs of those after the first
	// snapshot's last delivered ID (a later snapshot's is not before it).
	var total int64
	var tail []string
	floor := ""
	after := c.ID
	for round := 0; ; round++ {
		ids := make([]string, 0, len(seen))
		for id := range seen {
			ids = append(ids, id)
		}
		var err error
		if pa.snap, err = l.Snapshot(ctx, p, group, ids); err != nil {
			return nil, err
		}
		if round == 0 {
			floor = pa.snap.LastDelivered
		}
		if pa.snap.LastID == "" || ledger.CompareIDs(after, pa.snap.LastID) >= 0 {
			break
		}
		more := false
		for {
			events, err := l.RangeTo(ctx, p, after, pa.snap.LastID, 1000)
			if err != nil {
				return nil, err
			}
			if len(events) == 0 {
				break
			}
			after = events[len(events)-1].StreamID
			for entry := range ledger.ByEntry(events) {
				id := entry[0].StreamID
				total++
				if ledger.CompareIDs(id, floor) > 0 {
					tail = append(tail, id)
				}
				more = pa.meet(keys, p, entry, seen) || more
			}
		}
		if !more {
			break
		}
	}
	pa.countPending(total, tail)
	return pa, nil
}

// meet folds one entry of partition p, and records in seen the items of p the fold meets for
// the first time; it reports whether there was one.
func (pa *partAudit) meet(keys ledger.Keys, p int, entry []ledger.Event, seen map[string]bool) (more bool) {
	for _, e := range entry {
		if e.Malformed == nil && ledger.ValidateItemID(e.ItemID) == nil && keys.Partition(e.ItemID) == p && !seen[e.ItemID] {
			seen[e.ItemID] = true
			more = true
		}
	}
	pa.applyEntry(keys, p, entry)
	return more
}

// countPending counts what was not projected at the snapshot: with no group, every one of
// the total entries folded; else the group's pending entries and those of tail (the IDs of the
// entries after the first snapshot's last delivered one) not delivered yet.
func (pa *partAudit) countPending(total int64, tail []string) {
	switch {
	case !pa.snap.GroupExists:
		pa.pending += total
	default:
		pa.pending += pa.snap.Pending
		for _, id := range tail {
			if ledger.CompareIDs(id, pa.snap.LastDelivered) > 0 {
				pa.pending++
			}
		}
	}
}

// foldEvent applies one well-formed event to its item it. Orders at or before checkpoint (the
// stream ID a checkpoint folded through, "" for none) are not in orders unless they were
// still reserved there: a restock of one takes its units out of the item's sold units.
func foldEvent(rep *AuditReport, it *ItemAudit, e ledger.Event, orders map[string]*ledgerOrder, checkpoint string) {
	switch e.Type {
	case ledger.EventStock:
		it.limit, it.startMS, it.endMS, it.payWithinMS = e.Limit, e.StartMS, e.EndMS, e.PayWithinMS
		it.Closed = it.Closed || e.Closed
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
		foldDraw(rep, it, e, orders, checkpoint)
	case ledger.EventOrder:
		if e.Draw {
			foldDraw(rep, it, e, orders, checkpoint)
			return
		}
		it.Fold -= e.Quantity
		it.orders++
		o := &ledgerOrder{item: e.ItemID, request: e.RequestID, quantity: e.Quantity}
		if e.PayBy.IsZero() {
			it.Sold += e.Quantity
		} else {
			it.Reserved += e.Quantity
			o.state = ledger.StateReserved
		}
		orders[e.OrderID] = o
	case ledger.EventRestock:
		foldRestock(rep, it, e, orders, checkpoint)
	case ledger.EventPaid, ledger.EventCancelled, ledger.EventExpired:
		foldTransition(rep, it, e, orders, checkpoint)
	}
}

// foldRestock folds a restock event: the order's units come back.
func foldRestock(rep *AuditReport, it *ItemAudit, e ledger.Event, orders map[string]*ledgerOrder, checkpoint string) {
	it.Fold += e.Quantity
	it.Restocked += e.Quantity
	if o := orders[e.OrderID]; o != nil {
		if o.returns == 0 && beforeCheckpoint(e.OrderID, checkpoint) {
			it.CheckpointLive -= o.quantity
		}
		unsell(it, o)
		o.restocked = true
		o.reason = e.Reason
		o.returns++
	} else {
		it.Sold -= e.Quantity
		if beforeCheckpoint(e.OrderID, checkpoint) {
			it.CheckpointLive -= e.Quantity
		} else {
			rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, "restock of an order the ledger does not hold"})
		}
	}
}

// foldTransition folds a paid, cancelled or expired event of a reserved order.
func foldTransition(rep *AuditReport, it *ItemAudit, e ledger.Event, orders map[string]*ledgerOrder, checkpoint string) {
	o := orders[e.OrderID]
	switch {
	case o == nil && beforeCheckpoint(e.OrderID, checkpoint):
		rep.Violations = append(rep.Violations, Violation{e.ItemID, e.OrderID, string(e.Type) + " event of an order not reserved at the checkpoint " + checkpoint})
		return
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
	if o.returns == 0 && beforeCheckpoint(e.OrderID, checkpoint) {
		it.CheckpointLive -= o.quantity
	}
	unsell(it, o)
	o.state = string(e.Type)
	o.returns++
}

// beforeCheckpoint reports whether orderID is an order at or before the stream ID checkpoint
// of its partition ("" for none: no order is).
func beforeCheckpoint(orderID, checkpoint string) bool {
	if checkpoint == "" {
		return false
	}
	_, sid, err := ledger.ParseOrderID(orderID)
	return err == nil && ledger.CompareIDs(sid, checkpoint) <= 0
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
