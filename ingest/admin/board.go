package admin

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
)

// AuditSummary is what the board shows of an audit.
type AuditSummary struct {
	At      time.Time `json:"at"`
	TookMS  int64     `json:"took_ms"`
	Clean   bool      `json:"clean"`
	Items   int       `json:"items"`
	Pending int64     `json:"pending"`
	// Violations are the first violations found, as `flashsale audit` prints them;
	// ViolationCount counts them all.
	Violations     []string `json:"violations"`
	ViolationCount int      `json:"violation_count"`
	Error          string   `json:"error,omitempty"`
}

// AuditFunc runs the audit of `flashsale audit` (projector.Audit) and summarises it.
type AuditFunc func(ctx context.Context) (AuditSummary, error)

const (
	// chartSeconds is the span of the board's charts.
	chartSeconds = 180
	// boardMaxItems bounds the items one snapshot shows.
	boardMaxItems = 100
	// boardPages bounds the ledger pages (of 1000 entries) read per partition per sample, so
	// that a long ledger is caught up over several samples.
	boardPages = 20
	// backlogWindow is the number of samples over which a growing backlog is warned about.
	backlogWindow = 10
)

// Board keeps the live board's snapshot: it samples the ledger, the projector group and the
// purchase metrics once a second while someone watches (GET /admin/events or /admin/board).
type Board struct {
	o    Options
	auth *adminAuth
	log  *slog.Logger

	wake    chan struct{}
	stop    chan struct{}
	viewers atomic.Int64

	mu           sync.Mutex
	snap         []byte
	seq          uint64 // counts snapshots
	changed      chan struct{}
	audit        *AuditSummary
	auditRunning bool
	auditMu      sync.Mutex

	// The sampler's state, touched only by Run's goroutine.
	cursors   []string
	items     map[string]*itemState
	backlogs  [][]int64
	totals    []timedTotals
	rateChart []float64
	okChart   []float64
}

type itemState struct {
	ledger.Tally
	secs   [chartSeconds]int64
	orders [chartSeconds]int64
}

func (st *itemState) apply(e ledger.Event) {
	st.Tally.Apply(e)
	if e.Type != ledger.EventOrder || e.Malformed != nil {
		return
	}
	sec := e.Time.Unix()
	i := sec % chartSeconds
	if st.secs[i] != sec {
		st.secs[i], st.orders[i] = sec, 0
	}
	st.orders[i]++
}

// chart returns the orders of each of the chartSeconds seconds up to now, oldest first.
func (st *itemState) chart(now int64) []int64 {
	out := make([]int64, chartSeconds)
	for k := range out {
		sec := now - chartSeconds + 1 + int64(k)
		if i := sec % chartSeconds; st.secs[i] == sec {
			out[k] = st.orders[i]
		}
	}
	return out
}

type timedTotals struct {
	at      time.Time
	t       ingest.Totals
	soldOut ledger.WinnerStats
}

func newBoard(o Options, auth *adminAuth) *Board {
	return &Board{
		o: o, auth: auth, log: o.Log.With("component", "board"),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), changed: make(chan struct{}),
		cursors:  make([]string, o.Ledger.Keys().Partitions()),
		items:    map[string]*itemState{},
		backlogs: make([][]int64, o.Ledger.Keys().Partitions()),
	}
}

// Run takes a snapshot every second while the board has viewers, until ctx ends; then it
// ends the open event streams and returns nil. A nil Board (admin not mounted) just waits.
func (b *Board) Run(ctx context.Context) error {
	if b == nil {
		<-ctx.Done()
		return nil
	}
	defer close(b.stop)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if b.viewers.Load() > 0 {
			b.sample(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-b.wake:
		}
	}
}

// watch counts a viewer until the returned func is called, and asks for a sample now.
func (b *Board) watch() func() {
	b.viewers.Add(1)
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return func() { b.viewers.Add(-1) }
}

// current returns the latest snapshot, its number, and a channel closed when the next is
// taken.
func (b *Board) current() ([]byte, uint64, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snap, b.seq, b.changed
}

// boardSnapshot is the JSON the board's page renders.
type boardSnapshot struct {
	Now            time.Time        `json:"now"`
	Group          string           `json:"group"`
	IdleWarnMS     int64            `json:"idle_warn_ms"`
	Items          []boardItem      `json:"items"`
	MoreItems      int              `json:"more_items"`
	CatchingUp     bool             `json:"catching_up"`
	Purchases      boardPurchases   `json:"purchases"`
	SoldOut        boardSoldOut     `json:"sold_out_answers"`
	Partitions     []boardPartition `json:"partitions"`
	Warnings       []string         `json:"warnings"`
	Errors         []string         `json:"errors"`
	Audit          *AuditSummary    `json:"audit"`
	AuditAvailable bool             `json:"audit_available"`
	AuditRunning   bool             `json:"audit_running"`
}

type boardItem struct {
	ItemID    string     `json:"item_id"`
	PutOnSale int64      `json:"put_on_sale"`
	Sold      int64      `json:"sold"`
	Left      int64      `json:"left"`
	Restocked int64      `json:"restocked"`
	Orders    int64      `json:"orders"`
	Limit     int64      `json:"per_user_limit"`
	StartsAt  *time.Time `json:"starts_at"`
	EndsAt    *time.Time `json:"ends_at"`
	SoldOutAt *time.Time `json:"sold_out_at"`
	// Draw is set for an item sold by a draw (see GET /api/items/{item_id}).
	Draw *ingest.DrawReply `json:"draw,omitempty"`
	// Status is on_sale, sold_out, not_started or ended; for a draw item registering,
	// drawing or drawn until its units are all taken.
	Status string  `json:"status"`
	Rate   float64 `json:"orders_per_s"`
	Chart  []int64 `json:"chart"`
}

type boardPurchases struct {
	PerSecond map[string]float64 `json:"per_s"`
	Total     map[string]float64 `json:"total"`
	P50MS     *float64           `json:"p50_ms"`
	P99MS     *float64           `json:"p99_ms"`
	Chart     []float64          `json:"chart"`
	OKChart   []float64          `json:"ok_chart"`
}

// boardSoldOut is this process's sold-out answers: from memory (local) and from the purchase
// script (redis), totals and per second, and the partitions answered locally now.
type boardSoldOut struct {
	Local       int64   `json:"local"`
	Redis       int64   `json:"redis"`
	LocalPerS   float64 `json:"local_per_s"`
	RedisPerS   float64 `json:"redis_per_s"`
	Leased      int     `json:"leased_partitions"`
	Partitions  int     `json:"partitions"`
	IndexOrders int64   `json:"index_orders"`
}

type boardPartition struct {
	Partition   int             `json:"partition"`
	Exists      bool            `json:"exists"`
	Lag         int64           `json:"lag"`
	Pending     int64           `json:"pending"`
	OldestID    string          `json:"oldest_id"`
	OldestAgeMS int64           `json:"oldest_age_ms"`
	Consumers   []boardConsumer `json:"consumers"`
	Warn        bool            `json:"warn"`
	// Retained counts the partition's entries kept in Redis; HeldBackMS is how much older
	// than the retention window the first one is, HeldBy what holds it (ledger.RetainState).
	Retained   int64  `json:"retained"`
	HeldBackMS int64  `json:"held_back_ms"`
	HeldBy     string `json:"held_by,omitempty"`
}

type boardConsumer struct {
	Name    string `json:"name"`
	Pending int64  `json:"pending"`
	IdleMS  int64  `json:"idle_ms"`
	Stuck   bool   `json:"stuck"`
}

func (b *Board) sample(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, 3*time.Second)
	defer cancel()
	now := time.Now()
	snap := boardSnapshot{
		Now: now, Group: b.o.Group, IdleWarnMS: b.o.IdleWarn.Milliseconds(),
		Items: []boardItem{}, Partitions: []boardPartition{}, Warnings: []string{}, Errors: []string{},
		AuditAvailable: b.o.Audit != nil,
	}
	fail := func(what string, err error) {
		snap.Errors = append(snap.Errors, fmt.Sprintf("%s: %v", what, err))
	}
	snap.CatchingUp = b.readLedger(ctx, fail)
	b.itemViews(ctx, &snap, now, fail)
	b.purchaseView(&snap, now)
	b.partitionViews(ctx, &snap, fail)

	b.mu.Lock()
	snap.Audit, snap.AuditRunning = b.audit, b.auditRunning
	data, err := json.Marshal(snap)
	if err != nil {
		b.mu.Unlock()
		b.log.Error("board snapshot", "err", err)
		return
	}
	b.snap = data
	b.seq++
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// readLedger folds the ledger entries written since the last sample into the item tallies;
// it reports whether some partition has more to read than one sample takes.
func (b *Board) readLedger(ctx context.Context, fail func(string, error)) (behind bool) {
	for p := range b.cursors {
		if err := b.fromCheckpoint(ctx, p); err != nil {
			fail(fmt.Sprintf("checkpoint of partition %d", p), err)
			continue
		}
		for page := 0; ; page++ {
			if page == boardPages {
				behind = true
				break
			}
			events, err := b.o.Ledger.Range(ctx, p, b.cursors[p], 1000)
			if err != nil {
				fail(fmt.Sprintf("read partition %d", p), err)
				return behind
			}
			for _, e := range events {
				if e.ItemID == "" {
					continue
				}
				st := b.items[e.ItemID]
				if st == nil {
					st = &itemState{}
					b.items[e.ItemID] = st
				}
				st.apply(e)
			}
			if len(events) > 0 {
				b.cursors[p] = events[len(events)-1].StreamID
			}
			if len(events) < 1000 {
				break
			}
		}
	}
	return behind
}

// fromCheckpoint restarts partition p's tallies from its checkpoint when the checkpoint is past
// the board's cursor: the entries in between may be trimmed, and the checkpoint holds their
// fold.
func (b *Board) fromCheckpoint(ctx context.Context, p int) error {
	id, err := b.o.Ledger.CheckpointID(ctx, p)
	if err != nil || id == "" || ledger.CompareIDs(id, b.cursors[p]) <= 0 {
		return err
	}
	c, err := b.o.Ledger.LoadCheckpoint(ctx, p)
	if err != nil {
		return err
	}
	keys := b.o.Ledger.Keys()
	for item, st := range b.items {
		if keys.Partition(item) == p {
			st.Tally = ledger.Tally{}
		}
	}
	for item, ci := range c.Items {
		st := b.items[item]
		if st == nil {
			st = &itemState{}
			b.items[item] = st
		}
		st.Tally = ledger.TallyFrom(ci)
	}
	b.cursors[p] = c.ID
	return nil
}

func (b *Board) itemViews(ctx context.Context, snap *boardSnapshot, now time.Time, fail func(string, error)) {
	ids, err := b.o.Ledger.Items(ctx)
	if err != nil {
		fail("list items", err)
	}
	for id := range b.items {
		ids = append(ids, id) // items stocked before the index existed
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) > boardMaxItems {
		snap.MoreItems = len(ids) - boardMaxItems
		ids = ids[:boardMaxItems]
	}
	for _, id := range ids {
		it, err := b.o.Ledger.Item(ctx, id)
		if errors.Is(err, ledger.ErrUnknownItem) || errors.Is(err, ledger.ErrInvalid) {
			continue
		}
		if err != nil {
			fail("read item "+id, err)
			break
		}
		st := b.items[id]
		if st == nil {
			st = &itemState{}
		}
		v := boardItem{
			ItemID: id, PutOnSale: st.PutOnSale, Sold: st.Sold, Left: it.Stock, Restocked: st.Restocked,
			Orders: st.Orders, Limit: it.Limit, Chart: st.chart(now.Unix()), Status: "on_sale",
		}
		for k := chartSeconds - 6; k < chartSeconds-1; k++ {
			v.Rate += float64(v.Chart[k]) / 5 // the last five whole seconds
		}
		if !it.Start.IsZero() {
			v.StartsAt = &it.Start
		}
		if !it.End.IsZero() {
			v.EndsAt = &it.End
		}
		if !st.SoldOutAt.IsZero() {
			v.SoldOutAt = &st.SoldOutAt
		}
		switch {
		case it.Stock <= 0:
			v.Status = "sold_out"
		case !it.Start.IsZero() && now.Before(it.Start):
			v.Status = "not_started"
		case !it.End.IsZero() && !now.Before(it.End):
			v.Status = "ended"
		}
		if v.Draw = ingest.NewDrawReply(it, now); v.Draw != nil && it.Stock > 0 {
			v.Status = v.Draw.State
		}
		snap.Items = append(snap.Items, v)
	}
}

// purchaseView reads the purchase metrics (the values /metrics serves): rates by outcome over
// the last few seconds and the latency quantiles of the last ten.
func (b *Board) purchaseView(snap *boardSnapshot, now time.Time) {
	cur := timedTotals{at: now, t: b.o.Metrics.Totals(), soldOut: b.o.Ledger.WinnerStats()}
	b.totals = append(b.totals, cur)
	if len(b.totals) > backlogWindow+1 {
		b.totals = b.totals[1:]
	}
	p := boardPurchases{PerSecond: map[string]float64{}, Total: cur.t.Outcomes}
	// Rates over about three seconds: steady enough to read.
	prev := b.totals[max(len(b.totals)-4, 0)]
	dt := now.Sub(prev.at).Seconds()
	so := boardSoldOut{
		Local: cur.soldOut.SoldOutLocal, Redis: cur.soldOut.SoldOutRedis,
		Leased: cur.soldOut.Leased, Partitions: b.o.Ledger.Keys().Partitions(), IndexOrders: cur.soldOut.Orders,
	}
	if dt > 0 {
		so.LocalPerS = float64(so.Local-prev.soldOut.SoldOutLocal) / dt
		so.RedisPerS = float64(so.Redis-prev.soldOut.SoldOutRedis) / dt
	}
	snap.SoldOut = so
	var all, ok float64
	for o, v := range cur.t.Outcomes {
		r := 0.0
		if dt > 0 {
			r = (v - prev.t.Outcomes[o]) / dt
		}
		p.PerSecond[o] = r
		all += r
		if o == "ok" {
			ok = r
		}
	}
	if q, found := quantile(0.5, b.totals[0].t, cur.t); found && len(b.totals) > 1 {
		ms := q * 1000
		p.P50MS = &ms
	}
	if q, found := quantile(0.99, b.totals[0].t, cur.t); found && len(b.totals) > 1 {
		ms := q * 1000
		p.P99MS = &ms
	}
	b.rateChart = appendCapped(b.rateChart, all)
	b.okChart = appendCapped(b.okChart, ok)
	p.Chart, p.OKChart = b.rateChart, b.okChart
	snap.Purchases = p
}

func appendCapped(s []float64, v float64) []float64 {
	s = append(s, v)
	if len(s) > chartSeconds {
		s = slices.Clone(s[len(s)-chartSeconds:])
	}
	return s
}

// partitionViews reads the projector group's backlog per partition (what `flashsale pending`
// and the projector's lag and pending metrics report) and warns of what looks wrong.
func (b *Board) partitionViews(ctx context.Context, snap *boardSnapshot, fail func(string, error)) {
	warn := func(format string, args ...any) { snap.Warnings = append(snap.Warnings, fmt.Sprintf(format, args...)) }
	for p := range b.backlogs {
		bl, err := b.o.Ledger.Backlog(ctx, p, b.o.Group)
		if err != nil {
			fail(fmt.Sprintf("projector backlog of partition %d", p), err)
			continue
		}
		v := boardPartition{
			Partition: p, Exists: bl.Exists, Lag: bl.Lag, Pending: bl.Pending,
			OldestID: bl.Oldest, OldestAgeMS: bl.OldestAge.Milliseconds(), Consumers: []boardConsumer{},
		}
		reading := false
		for _, c := range bl.Consumers {
			bc := boardConsumer{Name: c.Name, Pending: c.Pending, IdleMS: c.Idle.Milliseconds()}
			if c.Idle > b.o.IdleWarn && c.Pending > 0 {
				bc.Stuck = true
				v.Warn = true
				warn("partition %d: consumer %s idle %s holding %d entries (stuck?)", p, c.Name, c.Idle.Round(time.Second), c.Pending)
			}
			if c.Idle <= b.o.IdleWarn {
				reading = true
			}
			v.Consumers = append(v.Consumers, bc)
		}
		if !bl.Exists {
			v.Warn = true
			warn("partition %d: no projector group %q yet", p, b.o.Group)
		} else if bl.Lag > 0 && !reading {
			v.Warn = true
			warn("partition %d: %d entries waiting and no consumer has read for %s", p, bl.Lag, b.o.IdleWarn)
		}
		hist := append(b.backlogs[p], bl.Lag+bl.Pending)
		if len(hist) > backlogWindow {
			hist = hist[len(hist)-backlogWindow:]
		}
		b.backlogs[p] = hist
		if growing(hist) {
			v.Warn = true
			warn("partition %d: projector backlog growing (%d → %d in %ds)", p, hist[0], hist[len(hist)-1], len(hist)-1)
		}
		if st, err := b.o.Ledger.RetainState(ctx, p, b.retain()); err != nil {
			fail(fmt.Sprintf("retention of partition %d", p), err)
		} else {
			v.Retained, v.HeldBackMS, v.HeldBy = st.Length, st.HeldBack.Milliseconds(), st.HeldBy
			if st.HeldBack > 0 && st.HeldBy != ledger.HeldByRetention {
				v.Warn = true
				warn("partition %d: ledger trimming held back %s by %s (%d entries retained)", p, st.HeldBack.Round(time.Second), st.HeldBy, st.Length)
			}
		}
		snap.Partitions = append(snap.Partitions, v)
	}
}

// retain is the retention window the board reports against.
func (b *Board) retain() time.Duration {
	if b.o.Retain > 0 {
		return b.o.Retain
	}
	return ledger.DefaultRetain
}

// growing reports whether a full window of backlog samples rose at every step of its second
// half and ends above where it started: a projector that keeps up drains its backlog between
// batches, so the backlog does not rise five seconds in a row.
func growing(h []int64) bool {
	if len(h) < backlogWindow || h[len(h)-1] <= h[0] {
		return false
	}
	for i := len(h) / 2; i < len(h); i++ {
		if h[i] <= h[i-1] {
			return false
		}
	}
	return true
}

// handleSnapshot answers GET /admin/board with a fresh snapshot.
func (b *Board) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	defer b.watch()()
	_, _, changed := b.current()
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
	case <-r.Context().Done():
		return
	}
	snap, _, _ := b.current()
	if snap == nil {
		ingest.WriteError(w, http.StatusServiceUnavailable, "board not ready")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(snap)
}

// handleEvents streams the snapshots as Server-Sent Events, one per sample, until the client
// leaves, the session ends or the server stops. EventSource reconnects by itself.
func (b *Board) handleEvents(w http.ResponseWriter, r *http.Request) {
	defer b.watch()()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(s string) bool {
		// The server's write timeout is for requests, not streams: extend it per write.
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write([]byte(s)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write("retry: 1000\n\n") {
		return
	}
	_, cookie := r.Context().Value(sessionKey{}).(session)
	var sent uint64
	for {
		snap, seq, changed := b.current()
		if snap != nil && seq != sent {
			if !write("data: " + string(snap) + "\n\n") {
				return
			}
			sent = seq
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-b.stop:
			return
		}
		if cookie {
			if _, ok, err := b.auth.session(r); !ok || err != nil {
				return // expired or signed out (or unknown: the reconnect will tell)
			}
		}
	}
}

// handleAudit runs the audit (POST /admin/audit), one at a time, and keeps its result for the
// board.
func (b *Board) handleAudit(w http.ResponseWriter, r *http.Request) {
	if b.o.Audit == nil {
		ingest.WriteError(w, http.StatusServiceUnavailable, "audit unavailable: this process has no MySQL (run it in serve or with flashsale audit)")
		return
	}
	if !b.auditMu.TryLock() {
		ingest.WriteError(w, http.StatusConflict, "an audit is already running")
		return
	}
	defer b.auditMu.Unlock()
	b.setAudit(nil, true)
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	sum, err := b.o.Audit(ctx)
	sum.At, sum.TookMS = start, time.Since(start).Milliseconds()
	if sum.Violations == nil {
		sum.Violations = []string{}
	}
	if err != nil {
		b.log.Error("audit could not run", "err", err)
		sum = AuditSummary{At: start, TookMS: sum.TookMS, Violations: []string{}, Error: "audit could not run: " + err.Error()}
		b.setAudit(&sum, false)
		ingest.WriteJSON(w, http.StatusServiceUnavailable, sum)
		return
	}
	b.setAudit(&sum, false)
	ingest.WriteJSON(w, http.StatusOK, sum)
}

func (b *Board) setAudit(sum *AuditSummary, running bool) {
	b.mu.Lock()
	if sum != nil {
		b.audit = sum
	}
	b.auditRunning = running
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

//go:embed board
var pageFiles embed.FS

var pageTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// servePage serves one of the board's embedded files, with headers that keep it from being
// framed or run foreign code.
func servePage(name string) http.HandlerFunc {
	data, err := pageFiles.ReadFile("board/" + name)
	if err != nil {
		panic(err) // the files are embedded at build time
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", pageTypes[path.Ext(name)])
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		w.Write(data)
	}
}

// quantile estimates the q-quantile of the observations between two readings of the latency
// histogram, interpolating inside a bucket as PromQL's histogram_quantile does. ok is false
// when nothing was observed in between.
func quantile(q float64, before, after ingest.Totals) (v float64, ok bool) {
	if len(after.Counts) == 0 {
		return 0, false
	}
	count := func(i int) float64 {
		n := after.Counts[i]
		if len(before.Counts) == len(after.Counts) {
			n -= before.Counts[i]
		}
		return float64(n)
	}
	total := count(len(after.Counts) - 1)
	if total == 0 {
		return 0, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, upper := range after.Bounds {
		c := count(i)
		if c >= rank {
			if c == below {
				return upper, true
			}
			return lower + (upper-lower)*(rank-below)/(c-below), true
		}
		lower, below = upper, c
	}
	// Above the last bound: report the last bound, as histogram_quantile does.
	return after.Bounds[len(after.Bounds)-1], true
}
