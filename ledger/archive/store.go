package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// store is where an archive's files live. Paths are slash-separated and relative to the
// archive's root.
type store interface {
	// put writes data at path atomically and durably: when it returns nil, a reader sees all
	// of data there, also after a crash; before, it sees the old content or nothing.
	put(ctx context.Context, path string, data []byte) error
	get(ctx context.Context, path string) ([]byte, error)
	// list returns the names of the files directly in dir, sorted, without names starting
	// with "." (temporary files); a missing dir has none.
	list(ctx context.Context, dir string) ([]string, error)
	remove(ctx context.Context, path string) error
	// where names path for an error message, e.g. a file path or s3://bucket/key.
	where(path string) string
	String() string
}

// probe writes and removes a small file at the root, so that an archive that cannot be
// written is found at start, not at the first segment.
func probe(ctx context.Context, s store) error {
	var b [8]byte
	rand.Read(b[:])
	path := ".probe-" + hex.EncodeToString(b[:])
	if err := s.put(ctx, path, []byte("flashsale archive probe\n")); err != nil {
		return err
	}
	return s.remove(ctx, path)
}

// fileStore keeps the archive in a directory. put writes a temporary file in the target's
// directory, fsyncs it, renames it over the target and fsyncs the directory.
type fileStore struct {
	root string
}

func newFileStore(root string, create bool) (*fileStore, error) {
	root = filepath.Clean(root)
	if !create {
		return &fileStore{root: root}, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("archive %s is not writable: %w", root, err)
	}
	return &fileStore{root: root}, nil
}

func (s *fileStore) String() string           { return "file://" + s.root }
func (s *fileStore) where(path string) string { return filepath.Join(s.root, filepath.FromSlash(path)) }

func (s *fileStore) put(_ context.Context, path string, data []byte) (err error) {
	target := s.where(path)
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *fileStore) get(_ context.Context, path string) ([]byte, error) {
	return os.ReadFile(s.where(path))
}

func (s *fileStore) list(_ context.Context, dir string) ([]string, error) {
	ents, err := os.ReadDir(s.where(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}

func (s *fileStore) remove(_ context.Context, path string) error {
	return os.Remove(s.where(path))
}

// staleTemp is how old a temporary file must be before it is taken for the leftover of a
// writer that died: a write takes milliseconds.
const staleTemp = time.Hour

// removeStaleTemps removes the temporary files under dir older than staleTemp, the leftovers
// of writers killed mid-write; it reports how many. Only a directory has them: an S3 PUT
// leaves nothing behind.
func (s *fileStore) removeStaleTemps(dir string) int {
	ents, err := os.ReadDir(s.where(dir))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			if os.Remove(filepath.Join(s.where(dir), e.Name())) == nil {
				n++
			}
		}
	}
	return n
}
