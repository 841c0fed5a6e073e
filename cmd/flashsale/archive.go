package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	oklog "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/ledger/archive"
)

// archiveFlags say where the ledger's history is archived.
type archiveFlags struct {
	url        *string
	segmentAge *time.Duration
	lease      *time.Duration
	getenv     func(string) string
}

func (f *flags) archive() archiveFlags {
	return archiveFlags{
		url: f.archiveURL("; none: no archiver in this process"),
		segmentAge: f.duration("archive-segment-age", "FLASHSALE_ARCHIVE_SEGMENT_AGE", 5*time.Second,
			"how long an entry waits for more before its segment is written to the archive"),
		lease: f.duration("archive-lease", "FLASHSALE_ARCHIVE_LEASE", 10*time.Second,
			"how long a partition's archiver lease lasts unrenewed: another process's archiver takes a partition over this long after its archiver died"),
		getenv: f.env.getenv,
	}
}

func (f *flags) archiveURL(none string) *string {
	return f.str("archive", "FLASHSALE_ARCHIVE", defaultArchive(f.env.getenv),
		"where the ledger's history is archived: file:///path or s3://bucket/prefix (S3 endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)"+none)
}

// defaultArchive is file://$XDG_DATA_HOME/flashsale/archive (~/.local/share/flashsale/archive).
func defaultArchive(getenv func(string) string) string {
	dir := getenv("XDG_DATA_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return "file://" + filepath.Join(dir, "flashsale", "archive")
}

// open opens the archive and binds it to l; nil without an archive (-archive none).
func (af archiveFlags) open(ctx context.Context, l *ledger.Ledger) (*archive.Archive, error) {
	if *af.url == "none" || *af.url == "" {
		return nil, nil
	}
	a, err := archive.OpenEnv(ctx, *af.url, af.getenv)
	if err != nil {
		return nil, err
	}
	id, err := l.ID(ctx)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	if err := a.Bind(ctx, id); err != nil {
		return nil, err
	}
	return a, nil
}

// openReader opens the archive at url for reading; nil for none. An archive that holds
// another ledger is refused.
func openArchiveReader(ctx context.Context, url string, getenv func(string) string, l *ledger.Ledger) (*archive.Archive, error) {
	if url == "none" || url == "" {
		return nil, nil
	}
	a, err := archive.OpenReader(ctx, url, getenv)
	if err != nil {
		return nil, err
	}
	id, err := l.StoredID(ctx)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	owner, err := a.Owner(ctx)
	if err != nil {
		return nil, err
	}
	if owner != "" && owner != id {
		return nil, fmt.Errorf("archive %s holds ledger %s, not this ledger (%s)", a, owner, id)
	}
	return a, nil
}

// addArchiver opens the archive and adds its archiver to g (nothing with -archive none).
// holder names it in the leases: the projector's consumer name, stable across restarts, so
// that a restarted process takes its partitions back at once.
func (af archiveFlags) addArchiver(g *oklog.Group, ctx context.Context, l *ledger.Ledger, holder string, reg prometheus.Registerer, log *slog.Logger) (*archive.Archive, error) {
	a, err := af.open(ctx, l)
	if err != nil || a == nil {
		return nil, err
	}
	if holder == "" {
		holder, _ = os.Hostname() // the projector's default consumer name
	}
	ar, err := archive.NewArchiver(a, l, archive.Config{
		Partitions: l.Keys().Partitions(),
		Holder:     holder,
		SegmentAge: *af.segmentAge,
		LeaseTTL:   *af.lease,
		Metrics:    archive.NewMetrics(reg),
	}, log)
	if err != nil {
		return nil, err
	}
	log.Info("archiving the ledger", "archive", a.String())
	actx, cancel := context.WithCancel(ctx)
	g.Add(func() error { return ar.Run(actx) }, func(error) { cancel() })
	return a, nil
}
