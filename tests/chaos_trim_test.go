package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The chaos of trimming: the ledger is archived (segments of at most 100 ms) and trimmed as
// fast as retention allows (-retain 300ms, a round every 20 ms) by the same processes, while the
// sale runs and something is killed. Besides the books of
// every chaos scenario (every acknowledged order in MySQL exactly once, `flashsale audit`
// clean, now folding from the checkpoints), the ledger must have been trimmed.

var trimArgs = []string{"-retain", "300ms", "-trim-interval", "20ms", "-archive-segment-age", "100ms"}

// checkpoints returns each partition's checkpoint ID ("" for none).
func checkpoints(t *testing.T, s *stack) []string {
	t.Helper()
	ids := make([]string, s.l.Keys().Partitions())
	for p := range ids {
		id, err := s.l.CheckpointID(context.Background(), p)
		if err != nil {
			t.Fatalf("checkpoint of partition %d: %v", p, err)
		}
		ids[p] = id
	}
	return ids
}

// waitTrim waits until some partition's checkpoint differs from before (nil: until some
// partition has one): the retainer has trimmed since.
func waitTrim(t *testing.T, s *stack, before []string, timeout time.Duration, when string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for p, id := range checkpoints(t, s) {
			if id != "" && (before == nil || id != before[p]) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no partition was trimmed within %s", when, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// trimFigures returns the entries retained in Redis and how many partitions have a checkpoint.
func trimFigures(t *testing.T, s *stack) (retained int64, checkpoints int) {
	t.Helper()
	for p := range s.l.Keys().Partitions() {
		n, err := s.l.Length(context.Background(), p)
		if err != nil {
			t.Fatalf("length of partition %d: %v", p, err)
		}
		retained += n
		if id, err := s.l.CheckpointID(context.Background(), p); err != nil {
			t.Fatalf("checkpoint of partition %d: %v", p, err)
		} else if id != "" {
			checkpoints++
		}
	}
	return retained, checkpoints
}

// TestChaosTrimProjectorKill9 sells through `flashsale ingest` while `flashsale project`,
// which also trims, is killed with SIGKILL three times and restarted: a kill between a
// checkpoint's archive copy and its trim, or in a fold, leaves the checkpoint and the stream
// consistent (one script call records the one and trims the other).
func TestChaosTrimProjectorKill9(t *testing.T) {
	const kills = 3
	phase := scaled(t, 800*time.Millisecond)
	maxLoad := (kills+1)*phase*3/2 + 15*time.Second
	s := newStack(t)
	sl := newSale(t, s, maxLoad, saleOptions{})
	api := startAPI(t, s, s.dsn, "ingest")
	sl.point(api.httpAddr)
	args := append([]string{"-consumer", "chaos-trim", "-batch", "200"}, trimArgs...)
	proj := startProject(t, s, args...)
	sl.start(maxLoad)
	for k := range kills {
		time.Sleep(phase)
		before := checkpoints(t, s)
		if k == 0 {
			before = nil
		}
		waitTrim(t, s, before, 20*time.Second, fmt.Sprintf("before kill %d", k+1))
		proj.kill()
		proj = startProject(t, s, args...)
	}
	time.Sleep(phase)
	waitTrim(t, s, checkpoints(t, s), 20*time.Second, "after the last restart")
	retained, ckpts := trimFigures(t, s)
	f := sl.finish(drainTimeout(t), fmt.Sprintf("project (trimming every 20 ms, -retain 300ms) killed %d times; %d entries retained at the end of the load, %d partitions with a checkpoint",
		kills, retained, ckpts))
	if ckpts == 0 || retained >= int64(f.acked) {
		t.Errorf("got %d entries retained of %d orders and %d checkpoints: nothing was trimmed", retained, f.acked, ckpts)
	}
	auditFull(t, s)
}

// auditFull runs `flashsale audit -full` (every checkpoint checked against the refold of the
// archive and the stream): it must be clean. Then a damaged segment, and a damaged checkpoint
// file, each stop it with exit 2 and an error naming the file.
func auditFull(t *testing.T, s *stack) {
	t.Helper()
	env := s.env(s.dsn)
	out := runCmd(t, env, "audit", "-full")
	if !strings.Contains(out, "checkpoints checked") {
		t.Fatalf("audit -full printed no history check:\n%s", out)
	}
	t.Logf("audit -full: %s", strings.SplitN(out, "\n", 2)[0])
	var dir string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "FLASHSALE_ARCHIVE=file://"); ok {
			dir = v
		}
	}
	for _, pattern := range []string{"*.seg", "*.ckpt"} {
		files, _ := filepath.Glob(filepath.Join(dir, "p*", pattern))
		files2, _ := filepath.Glob(filepath.Join(dir, "p*", "*", pattern))
		files = append(files, files2...)
		if len(files) == 0 {
			t.Fatalf("no %s files under %s", pattern, dir)
		}
		victim := files[len(files)/2]
		b, err := os.ReadFile(victim)
		if err != nil {
			t.Fatal(err)
		}
		orig := slices.Clone(b)
		b[len(b)/2] ^= 0x04
		if err := os.WriteFile(victim, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := runCode(t, env, "audit", "-full")
		if code != 2 || !strings.Contains(stderr, victim) {
			t.Errorf("audit -full over a damaged %s: exit %d, %s; want exit 2 naming %s", pattern, code, stderr, victim)
		}
		os.WriteFile(victim, orig, 0o644)
	}
}

// TestChaosTrimRedisKill9 kills the redis-server with SIGKILL while `flashsale serve` trims
// every 20 ms and restarts it from its AOF: the checkpoint and the trim are one script call,
// so the AOF holds both or neither, and the audit from the checkpoints is clean.
func TestChaosTrimRedisKill9(t *testing.T) {
	phase := scaled(t, 1500*time.Millisecond)
	down := scaled(t, time.Second)
	maxLoad := 3*phase + down + 20*time.Second
	s := newStack(t)
	sl := newSale(t, s, maxLoad, saleOptions{unavailable: true})
	srv := startAPI(t, s, s.dsn, "serve", append([]string{"-consumer", "chaos-trim-redis"}, trimArgs...)...)
	sl.point(srv.httpAddr)
	sl.start(maxLoad)

	time.Sleep(phase)
	sl.waitAcks(0, 10*time.Second, "before the kill")
	waitTrim(t, s, nil, 20*time.Second, "before the kill")
	_, before := trimFigures(t, s)
	atKill := checkpoints(t, s)
	s.redis.Kill()
	time.Sleep(down)
	if err := s.redis.Start(); err != nil {
		t.Fatalf("restart redis from its AOF: %v", err)
	}
	sl.waitAcks(sl.ackCount(), 15*time.Second, "after the Redis restart")
	waitTrim(t, s, atKill, 20*time.Second, "after the Redis restart")
	time.Sleep(phase)
	retained, ckpts := trimFigures(t, s)
	f := sl.finish(drainTimeout(t), fmt.Sprintf("Redis killed while serve trimmed every 20 ms (-retain 300ms), down %s; %d partitions with a checkpoint before the kill, %d after; %d entries retained at the end of the load",
		down, before, ckpts, retained))
	if retained >= int64(f.acked) {
		t.Errorf("got %d entries retained of %d orders: nothing was trimmed", retained, f.acked)
	}
	if srv.exited() {
		t.Errorf("serve exited (code %d)", srv.cmd.ProcessState.ExitCode())
	}
}
