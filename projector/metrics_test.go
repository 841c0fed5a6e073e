package projector_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// commandLog records every command a client sends, alone or in a pipeline.
type commandLog struct {
	mu   sync.Mutex
	cmds []redis.Cmder
}

func (h *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.add(cmd)
		return err
	}
}

func (h *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.add(cmds...)
		return err
	}
}

func (h *commandLog) add(cmds ...redis.Cmder) {
	h.mu.Lock()
	h.cmds = append(h.cmds, cmds...)
	h.mu.Unlock()
}

// take returns the commands sent since the last take.
func (h *commandLog) take() []redis.Cmder {
	h.mu.Lock()
	defer h.mu.Unlock()
	cmds := h.cmds
	h.cmds = nil
	return cmds
}

// gauges returns the value of metric name per partition label.
func gauges(t *testing.T, reg *prometheus.Registry, name string) map[int]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "partition" {
					p, _ := strconv.Atoi(lp.GetValue())
					out[p] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// TestScrapeCostIsBoundedWhenLagIsUnknown: with a backlog whose size Redis cannot tell (the
// group moved by XGROUP SETID, as after an AOF reload), a scrape sends a few cheap commands
// per partition and reads at most one entry per partition, and still reports the backlog.
func TestScrapeCostIsBoundedWhenLagIsUnknown(t *testing.T) {
	ctx := context.Background()
	r, _ := testenv.StartRedis(t)
	log := &commandLog{}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	rdb.AddHook(log)
	l, err := ledger.Open(ctx, rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Two items in distinct partitions: "u" gets a backlog Redis cannot count, "k" one it can.
	k := l.Keys()
	u, known := "u", ""
	for i := 0; known == ""; i++ {
		if c := fmt.Sprintf("k%d", i); k.Partition(c) != k.Partition(u) {
			known = c
		}
	}
	pu, pk := k.Partition(u), k.Partition(known)
	for _, it := range []string{u, known} {
		if _, err := l.SetStock(ctx, it, ledger.StockChange{Op: ledger.StockSet, Quantity: 5000}); err != nil {
			t.Fatal(err)
		}
	}
	pipe := rdb.Pipeline()
	for i := range 3000 {
		for _, it := range []string{u, known} {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: k.Events(k.Partition(it)), Values: []string{
				"v", "1", "type", "order", "item_id", it, "quantity", "1", "user_id", "x", "request_id", fmt.Sprintf("r%d", i), "ts", "1"}})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for p := range k.Partitions() {
		if err := l.EnsureGroup(ctx, p, projector.DefaultGroup); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []int{pu, pk} {
		if _, err := l.ReadGroup(ctx, p, projector.DefaultGroup, "c", ">", 10, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	// Move the group of pu back to its 6th entry: Redis forgets how far it has read.
	first, err := rdb.XRangeN(ctx, k.Events(pu), "-", "+", 6).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.XGroupSetID(ctx, k.Events(pu), projector.DefaultGroup, first[5].ID).Err(); err != nil {
		t.Fatal(err)
	}
	g, err := rdb.XInfoGroups(ctx, k.Events(pu)).Result()
	if err != nil || g[0].Lag != -1 {
		t.Fatalf("setup: XINFO GROUPS %+v (%v), want an unknown lag", g, err)
	}

	reg := prometheus.NewRegistry()
	projector.NewMetrics(reg, l, projector.DefaultGroup)
	for scrape := range 3 {
		log.take()
		lag := gauges(t, reg, "flashsale_projector_lag")
		cmds := log.take()
		age := gauges(t, reg, "flashsale_projector_lag_seconds")
		pending := gauges(t, reg, "flashsale_projector_pending")

		if max := 2 * k.Partitions(); len(cmds) > max {
			t.Errorf("scrape %d sent %d commands, want at most %d (2 per partition)", scrape, len(cmds), max)
		}
		read := 0
		for _, c := range cmds {
			name := strings.ToLower(c.Name())
			if name == "xrange" || name == "xrevrange" || name == "xreadgroup" || name == "xread" {
				args := fmt.Sprint(c.Args())
				if !strings.HasSuffix(args, " count 1]") {
					t.Errorf("scrape %d sent %s, want COUNT 1 at most", scrape, args)
				}
				if m, ok := c.(*redis.XMessageSliceCmd); ok {
					read += len(m.Val())
				}
			}
		}
		if read > k.Partitions() {
			t.Errorf("scrape %d read %d entries, want at most one per partition", scrape, read)
		}
		// 1 stock event + 3000 orders per partition, 10 of them delivered.
		if lag[pu] != -1 {
			t.Errorf("lag of partition %d: got %v, want -1 (unknown)", pu, lag[pu])
		}
		if want := float64(3001 - 10); lag[pk] != want {
			t.Errorf("lag of partition %d: got %v, want %v", pk, lag[pk], want)
		}
		if age[pu] <= 0 || age[pu] > 60 || age[pk] <= 0 {
			t.Errorf("lag seconds: got %v, want the age of the oldest undelivered entry (> 0)", age)
		}
		if pending[pu] != 10 || pending[pk] != 10 {
			t.Errorf("pending: got %v, want 10 on partitions %d and %d", pending, pu, pk)
		}
		for p := range k.Partitions() {
			if p != pu && p != pk && (lag[p] != 0 || age[p] != 0) {
				t.Errorf("partition %d without entries: lag %v, lag seconds %v, want 0", p, lag[p], age[p])
			}
		}
	}
}
