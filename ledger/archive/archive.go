// Package archive keeps the ledger's history outside Redis: every entry of every partition
// stream, in order, in checksummed segment files, and the checkpoints written beside them. An
// archive lives in a directory (file:///path) or under a prefix of an S3 bucket
// (s3://bucket/prefix). Segments are written whole or not at all and are never changed;
// reading verifies every byte and the chain from one segment to the next, so that a missing,
// damaged or misnamed file stops a reader with an error that names it.
//
// Layout under the archive's root, for partition 3:
//
//	p0003/<first>_<last>.seg          entries first..last (stream IDs, zero-padded)
//	p0003/checkpoints/<id>.ckpt       an opaque checkpoint at stream ID id
//
// The package does not know Redis: the Archiver (archiver.go) feeds it from a Source.
package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"strings"
)

// Entry is one stream entry: its stream ID and its fields as Redis holds them.
type Entry struct {
	ID     string
	Fields map[string]string
}

// Checkpoint is an opaque checkpoint stored at a stream position.
type Checkpoint struct {
	ID   string
	Data []byte
}

// ErrCorrupt marks an archive file that fails verification: a checksum, a header, an entry
// order, a name that does not match the content, or a gap in the chain of segments. The
// error's text names the file.
var ErrCorrupt = errors.New("corrupt archive file")

// Archive is an open archive. It is safe for concurrent use.
type Archive struct {
	store store
}

// Open opens the archive at rawURL (file:///path or s3://bucket/prefix) and checks that it
// can write there: it writes and removes a probe file. A directory is created if missing. For
// S3, the endpoint and credentials come from the environment (see OpenEnv).
func Open(ctx context.Context, rawURL string) (*Archive, error) {
	return OpenEnv(ctx, rawURL, os.Getenv)
}

// OpenEnv is Open with the environment read through getenv. S3 reads:
// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (default https://s3.amazonaws.com; an http:// URL
// turns TLS off), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or MINIO_ROOT_USER and
// MINIO_ROOT_PASSWORD), AWS_SESSION_TOKEN, and AWS_REGION or AWS_DEFAULT_REGION.
func OpenEnv(ctx context.Context, rawURL string, getenv func(string) string) (*Archive, error) {
	return open(ctx, rawURL, getenv, true)
}

// OpenReader is OpenEnv for reading only: it neither creates the directory nor checks that it
// can write.
func OpenReader(ctx context.Context, rawURL string, getenv func(string) string) (*Archive, error) {
	return open(ctx, rawURL, getenv, false)
}

func open(ctx context.Context, rawURL string, getenv func(string) string, write bool) (*Archive, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("archive url %q: %w", rawURL, err)
	}
	var s store
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("archive url %q: want file:///absolute/path", rawURL)
		}
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("archive url %q: want file:///absolute/path", rawURL)
		}
		s, err = newFileStore(u.Path, write)
	case "s3":
		s, err = newS3Store(ctx, u, getenv)
	default:
		return nil, fmt.Errorf("archive url %q: want file:///path or s3://bucket/prefix", rawURL)
	}
	if err != nil {
		return nil, err
	}
	if !write {
		return &Archive{store: s}, nil
	}
	if err := probe(ctx, s); err != nil {
		return nil, fmt.Errorf("archive %s is not writable: %w", s, err)
	}
	return &Archive{store: s}, nil
}

// String names the archive's location (without credentials).
func (a *Archive) String() string { return a.store.String() }

// Through returns the last stream ID archived for partition p, "0-0" when none is. It reads
// only the names of the partition's segments.
func (a *Archive) Through(ctx context.Context, partition int) (string, error) {
	segs, err := a.segments(ctx, partition)
	if err != nil {
		return "", err
	}
	var last streamID
	for _, s := range segs {
		last = maxID(last, s.last)
	}
	return last.String(), nil
}

// Read calls fn with every archived entry of partition p whose ID is after `after` ("" or
// "0-0": from the first), in stream order, each exactly once. Each segment is verified whole
// (checksum, header, name, order, and that it follows the entries read before it) before any
// of its entries is handed to fn; the first file that fails stops Read with an error matching
// ErrCorrupt that names it. An error from fn stops Read and is returned as it is.
func (a *Archive) Read(ctx context.Context, partition int, after string, fn func(Entry) error) error {
	from, err := parseAfter(after)
	if err != nil {
		return err
	}
	segs, err := a.segments(ctx, partition)
	if err != nil {
		return err
	}
	done := from
	for _, s := range segs {
		if !done.less(s.last) {
			continue // wholly read already (or an overlapping rewrite of what was)
		}
		data, err := a.store.get(ctx, s.path)
		if err != nil {
			return fmt.Errorf("archive read %s: %w", a.store.where(s.path), err)
		}
		seg, err := decodeSegment(data)
		if err == nil {
			err = seg.matches(partition, s)
		}
		if err == nil && done.less(seg.prev) {
			err = fmt.Errorf("follows %s but the archive holds entries only through %s: a segment is missing before it", seg.prev, done)
		}
		if err != nil {
			return fmt.Errorf("%w %s: %v", ErrCorrupt, a.store.where(s.path), err)
		}
		for _, e := range seg.entries {
			if !done.less(e.id) {
				continue
			}
			if err := fn(Entry{ID: e.ID, Fields: e.Fields}); err != nil {
				return err
			}
			done = e.id
		}
	}
	return nil
}

// WriteSegment stores entries of partition p, which must follow prev (the last ID archived
// before them, "0-0" for none) in ascending order, as one segment, atomically and durably:
// when it returns nil the segment survives a crash of this process or machine. Writing the
// same entries after the same prev again writes the same bytes under the same name. It
// returns the segment's name.
func (a *Archive) WriteSegment(ctx context.Context, partition int, prev string, entries []Entry) (string, error) {
	data, name, err := encodeSegment(partition, prev, entries)
	if err != nil {
		return "", err
	}
	path := partitionDir(partition) + "/" + name
	if err := a.store.put(ctx, path, data); err != nil {
		return "", fmt.Errorf("archive write %s: %w", a.store.where(path), err)
	}
	return a.store.where(path), nil
}

// PutCheckpoint stores data as partition p's checkpoint at stream ID id, atomically: a reader
// sees the whole checkpoint or none. Storing one at an ID that has one replaces it.
func (a *Archive) PutCheckpoint(ctx context.Context, partition int, id string, data []byte) error {
	body, name, err := encodeCheckpoint(partition, id, data)
	if err != nil {
		return err
	}
	path := checkpointDir(partition) + "/" + name
	if err := a.store.put(ctx, path, body); err != nil {
		return fmt.Errorf("archive write %s: %w", a.store.where(path), err)
	}
	return nil
}

// Checkpoints returns partition p's checkpoints in ascending order of ID, each verified; a
// damaged one fails the call with an error matching ErrCorrupt that names it.
func (a *Archive) Checkpoints(ctx context.Context, partition int) ([]Checkpoint, error) {
	dir := checkpointDir(partition)
	names, err := a.store.list(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("archive list %s: %w", a.store.where(dir), err)
	}
	type named struct {
		id   streamID
		path string
	}
	var found []named
	for _, n := range names {
		path := dir + "/" + n
		id, ok := parseCheckpointName(n)
		if !ok {
			return nil, fmt.Errorf("%w %s: not a checkpoint name (want <ms>-<seq>.ckpt, zero-padded)", ErrCorrupt, a.store.where(path))
		}
		found = append(found, named{id, path})
	}
	slices.SortFunc(found, func(x, y named) int { return x.id.compare(y.id) })
	out := make([]Checkpoint, 0, len(found))
	for _, f := range found {
		body, err := a.store.get(ctx, f.path)
		if err != nil {
			return nil, fmt.Errorf("archive read %s: %w", a.store.where(f.path), err)
		}
		c, err := decodeCheckpoint(body, partition, f.id)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrCorrupt, a.store.where(f.path), err)
		}
		out = append(out, c)
	}
	return out, nil
}

// RemoveStaleTemps removes partition p's temporary files left by writers killed mid-write
// more than an hour ago (a directory archive only) and reports how many it removed.
func (a *Archive) RemoveStaleTemps(partition int) int {
	fs, ok := a.store.(*fileStore)
	if !ok {
		return 0
	}
	return fs.removeStaleTemps(partitionDir(partition)) + fs.removeStaleTemps(checkpointDir(partition))
}

// segmentRef is a segment known by its name.
type segmentRef struct {
	path        string
	first, last streamID
}

// segments lists partition p's segments in order of (first, last). A file whose name ends in
// .seg but does not parse fails the call; other names (temporary files) are left out.
func (a *Archive) segments(ctx context.Context, partition int) ([]segmentRef, error) {
	dir := partitionDir(partition)
	names, err := a.store.list(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("archive list %s: %w", a.store.where(dir), err)
	}
	var segs []segmentRef
	for _, n := range names {
		if !strings.HasSuffix(n, segmentExt) {
			continue
		}
		first, last, ok := parseSegmentName(n)
		if !ok {
			return nil, fmt.Errorf("%w %s: not a segment name (want <first>_<last>.seg, zero-padded stream IDs)", ErrCorrupt, a.store.where(dir+"/"+n))
		}
		segs = append(segs, segmentRef{path: dir + "/" + n, first: first, last: last})
	}
	slices.SortFunc(segs, func(x, y segmentRef) int {
		if c := x.first.compare(y.first); c != 0 {
			return c
		}
		return x.last.compare(y.last)
	})
	return segs, nil
}

func partitionDir(p int) string  { return fmt.Sprintf("p%04d", p) }
func checkpointDir(p int) string { return partitionDir(p) + "/checkpoints" }

func parseAfter(after string) (streamID, error) {
	if after == "" || after == "0" {
		return streamID{}, nil
	}
	id, ok := parseStreamID(after)
	if !ok {
		return streamID{}, fmt.Errorf("archive read: stream ID %q: want <ms>-<seq>", after)
	}
	return id, nil
}

// identity is the root file that binds an archive to one ledger.
type identity struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Ledger  string `json:"ledger"`
}

const identityFile = "ledger.json"

// Owner returns the ID of the ledger the archive holds, "" when it holds none yet.
func (a *Archive) Owner(ctx context.Context) (string, error) {
	body, err := a.store.get(ctx, identityFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("archive read %s: %w", a.store.where(identityFile), err)
	}
	var id identity
	if err := json.Unmarshal(body, &id); err != nil || id.Format != "flashsale-archive" || id.Ledger == "" {
		return "", fmt.Errorf("%w %s: not an archive identity", ErrCorrupt, a.store.where(identityFile))
	}
	return id.Ledger, nil
}

// Bind ties the archive to the ledger named ledgerID (ledger.Ledger.ID): an archive that has
// none yet takes it; one that holds another ledger's history is refused, so that two ledgers
// never mix their segments (and a new ledger never takes an old one's segments for its own).
func (a *Archive) Bind(ctx context.Context, ledgerID string) error {
	owner, err := a.Owner(ctx)
	if err != nil {
		return err
	}
	if owner == "" {
		body, _ := json.Marshal(identity{Format: "flashsale-archive", Version: formatVersion, Ledger: ledgerID})
		if err := a.store.put(ctx, identityFile, append(body, '\n')); err != nil {
			return fmt.Errorf("archive write %s: %w", a.store.where(identityFile), err)
		}
		return nil
	}
	if owner != ledgerID {
		return fmt.Errorf("archive %s holds ledger %s, not this ledger (%s): give each ledger its own archive", a, owner, ledgerID)
	}
	return nil
}
