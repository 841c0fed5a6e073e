package projector_test

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// After a read that did not fill a batch the consumer waits Linger: entries added meanwhile
// are read, written and acknowledged together, by one XACK.
func TestLingerReadsWhatArrivedMeanwhileTogether(t *testing.T) {
	e, b, acks := ordersEnv(t)
	var mu sync.Mutex
	var xacks [][]string // the IDs each XACK named, in order
	e.rdb.AddHook(testenv.Hook(func(cmd redis.Cmder) {
		if cmd.Name() != "xack" {
			return
		}
		var ids []string
		for _, a := range cmd.Args()[3:] {
			ids = append(ids, fmt.Sprint(a))
		}
		mu.Lock()
		xacks = append(xacks, ids)
		mu.Unlock()
	}))
	p := e.l.Keys().Partition("a")
	first, _ := e.addOrders(t, p, entryOrder{"a", "u1", "r1", 1, 0})
	e.start(t, projector.Config{Linger: time.Second})
	deadline := time.Now().Add(30 * time.Second)
	for acks.acks(first) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if acks.acks(first) == 0 {
		t.Fatal("the first entry was not acknowledged")
	}
	// The consumer lingers now: both entries go in its next read.
	second, _ := e.addOrders(t, p, entryOrder{"a", "u2", "r2", 1, 0})
	time.Sleep(2 * time.Millisecond) // addOrders numbers entries by the millisecond
	third, _ := e.addOrders(t, p, entryOrder{b, "u3", "r3", 1, 0})
	e.waitSettled(t)

	mu.Lock()
	defer mu.Unlock()
	for _, ids := range xacks {
		if slices.Contains(ids, second) || slices.Contains(ids, third) {
			if !slices.Contains(ids, second) || !slices.Contains(ids, third) {
				t.Fatalf("XACKs %v: entries %s and %s acknowledged apart", xacks, second, third)
			}
			return
		}
	}
	t.Fatalf("XACKs %v: entries %s and %s not acknowledged", xacks, second, third)
}

func TestLingerAboveASecondIsRefused(t *testing.T) {
	_, err := projector.New(nil, nil, projector.Config{Linger: 2 * time.Second}, nil, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "linger") {
		t.Fatalf("New with a linger of 2s: %v, want an error about the linger", err)
	}
}
