package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	oklog "github.com/oklog/run"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/ledger/archive"
)

// minSeed is the shortest seed accepted: shorter ones could be guessed from the commitment.
const minSeed = 16

// readSeed reads a draw's secret seed: the file's bytes without trailing line ends.
func readSeed(path string) ([]byte, error) {
	if path == "" {
		return nil, usageError{"-seed-file is required"}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < minSeed {
		return nil, usageError{fmt.Sprintf("seed file %s: the seed must be at least %d bytes (e.g. head -c 32 /dev/urandom | base64 > %s)", path, minSeed, path)}
	}
	return b, nil
}

func draw(ctx context.Context, e *env, args []string) error {
	const about = `Subcommands:
  run ITEM     reveal the seed and draw ITEM (once; safe to run again or from several hosts)
  verify ITEM  recompute ITEM's draw from the ledger and check every winner and promotion
Both take -seed-file F: the seed whose SHA-256 was published when the item was created.
verify exits 1 naming the first event the ranks do not explain.`
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(e.stderr, "Usage: flashsale draw run|verify [flags] ITEM\n\n%s\n", about)
		if len(args) == 0 {
			return usageError{"draw: missing subcommand"}
		}
		return flag.ErrHelp
	}
	sub := args[0]
	if sub != "run" && sub != "verify" {
		return usageError{fmt.Sprintf("draw: unknown subcommand %q (want run or verify)", sub)}
	}
	f := e.flags("draw "+sub, "ITEM", about)
	rf := f.redis()
	seedFile := f.String("seed-file", "", "file holding the draw's secret seed")
	batch := f.Int("batch", ledger.DefaultDrawBatch, "run: most entries written per script call (bounds how long Redis is held)")
	winnerBatch := f.Int("winner-batch", ledger.DefaultWinnerBatch, "run: most winners written per script call")
	archiveURL := f.archiveURL(", read by verify before the stream; none: the stream only")
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	if f.NArg() != 1 {
		f.Usage()
		return usageError{"draw " + sub + ": want ITEM"}
	}
	if *batch < 1 || *winnerBatch < 1 {
		return usageError{"draw " + sub + ": -batch and -winner-batch must be at least 1"}
	}
	item := f.Arg(0)
	seed, err := readSeed(*seedFile)
	if err != nil {
		return err
	}
	l, closeLedger, err := rf.open(ctx)
	if err != nil {
		return err
	}
	defer closeLedger()
	if sub == "run" {
		res, err := l.RunDraw(ctx, item, seed, ledger.DrawOptions{Batch: *batch, WinnerBatch: *winnerBatch})
		if err != nil {
			return fmt.Errorf("draw run %s: %w", item, err)
		}
		fmt.Fprintf(e.stdout, "%s drawn: %d entries, %d winners taking %d of %d units (%d left over), %d waitlisted; %d batches written here, longest %s\n",
			item, res.Entries, res.Winners, res.WonUnits, res.Units, res.Units-res.WonUnits, res.Entries-res.Winners, res.Batches, res.Longest.Round(time.Microsecond))
		return nil
	}
	arch, err := openArchiveReader(ctx, *archiveURL, e.getenv, l)
	if err != nil {
		return err
	}
	check, err := l.VerifyDraw(ctx, item, seed, historySource(l, arch))
	if errors.Is(err, ledger.ErrDeviation) {
		return exitError{1, err}
	}
	if err != nil {
		return fmt.Errorf("draw verify %s: %w", item, err)
	}
	state := "finished"
	if !check.Finished {
		state = "not finished"
	}
	fmt.Fprintf(e.stdout, "%s draw verified (%s): %d entries, %d units, %d won, %d waitlisted, %d promoted, %d lost\n",
		item, state, check.Entries, check.Units, check.Winners, check.Waitlisted, check.Promoted, check.Lost)
	return nil
}

// historySource reads a partition's whole history: the archived entries (with a), then the
// stream after them; entries trimmed from the stream and not in the archive are an error.
func historySource(l *ledger.Ledger, a *archive.Archive) ledger.EventSource {
	return func(ctx context.Context, p int, fn func(ledger.Event) error) error {
		after := "0-0"
		if a != nil {
			err := a.Read(ctx, p, "", func(e archive.Entry) error {
				after = e.ID
				for _, ev := range l.DecodeEntry(p, e.ID, e.Fields) {
					if err := fn(ev); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("partition %d from the archive: %w", p, err)
			}
		}
		if first, err := l.TrimmedPast(ctx, p, after); err != nil {
			return err
		} else if first != "" {
			return fmt.Errorf("partition %d: the stream starts at %s, after the archive's end %s: entries are missing", p, first, after)
		}
		return l.StreamFrom(ctx, p, after, fn)
	}
}

// drawSeeds parses serve's -draw-seeds: ITEM=FILE pairs, comma separated.
func drawSeeds(v string) (map[string][]byte, error) {
	seeds := map[string][]byte{}
	for _, pair := range strings.Split(v, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		item, file, ok := strings.Cut(pair, "=")
		if !ok || ledger.ValidateItemID(item) != nil {
			return nil, usageError{fmt.Sprintf("-draw-seeds %q: want ITEM=FILE pairs, comma separated", pair)}
		}
		seed, err := readSeed(file)
		if err != nil {
			return nil, err
		}
		seeds[item] = seed
	}
	return seeds, nil
}

// addDrawer adds to g a loop that draws each item of seeds once its draw time has come by
// Redis's clock. Every process given the seed may run it: RunDraw writes each entry once.
func addDrawer(g *oklog.Group, ctx context.Context, l *ledger.Ledger, seeds map[string][]byte, log *slog.Logger) {
	if len(seeds) == 0 {
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	g.Add(func() error {
		left := len(seeds)
		done := map[string]bool{}
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for left > 0 {
			for item, seed := range seeds {
				if done[item] {
					continue
				}
				res, err := l.RunDraw(dctx, item, seed, ledger.DrawOptions{})
				switch {
				case errors.Is(err, ledger.ErrDrawNotDue):
					continue
				case err != nil && dctx.Err() == nil:
					log.Warn("draw failed; retrying", "item", item, "err", err)
					continue
				case err != nil:
					return nil
				}
				done[item] = true
				left--
				log.Info("drawn", "item", item, "entries", res.Entries, "winners", res.Winners, "units", res.Units, "won_units", res.WonUnits, "batches", res.Batches, "longest_batch", res.Longest)
			}
			select {
			case <-dctx.Done():
				return nil
			case <-t.C:
			}
		}
		<-dctx.Done()
		return nil
	}, func(error) { cancel() })
}
