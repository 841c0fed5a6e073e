package archive_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger/archive"
)

func openDir(t *testing.T) (*archive.Archive, string) {
	t.Helper()
	dir := t.TempDir()
	a, err := archive.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	return a, dir
}

func entries(from, n int) []archive.Entry {
	var es []archive.Entry
	for i := from; i < from+n; i++ {
		es = append(es, archive.Entry{ID: fmt.Sprintf("%d-%d", 1000+i/3, i%3), Fields: map[string]string{"type": "order", "n": fmt.Sprint(i)}})
	}
	return es
}

func readAll(t *testing.T, a *archive.Archive, p int, after string) ([]archive.Entry, error) {
	t.Helper()
	var got []archive.Entry
	err := a.Read(context.Background(), p, after, func(e archive.Entry) error {
		got = append(got, e)
		return nil
	})
	return got, err
}

// write stores es as consecutive segments of size n after prev, returning the last ID.
func write(t *testing.T, a *archive.Archive, p int, prev string, es []archive.Entry, n int) string {
	t.Helper()
	for len(es) > 0 {
		k := min(n, len(es))
		if _, err := a.WriteSegment(context.Background(), p, prev, es[:k]); err != nil {
			t.Fatal(err)
		}
		prev, es = es[k-1].ID, es[k:]
	}
	return prev
}

func TestReadGivesEveryEntryOnceInOrder(t *testing.T) {
	ctx := context.Background()
	a, _ := openDir(t)
	if got, err := a.Through(ctx, 2); err != nil || got != "0-0" {
		t.Fatalf("Through of an empty archive = %q, %v; want 0-0", got, err)
	}
	all := entries(0, 25)
	all[3].Fields["bin"] = "\xff\x00\xfe" // not UTF-8: must come back byte for byte
	last := write(t, a, 2, "0-0", all[:10], 4)
	// An overlapping segment, as two archivers at once could write: read once.
	if _, err := a.WriteSegment(ctx, 2, "0-0", all[:12]); err != nil {
		t.Fatal(err)
	}
	write(t, a, 2, last, all[10:], 7)
	got, err := readAll(t, a, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, all) {
		t.Fatalf("got %d entries %v, want %d %v", len(got), got, len(all), all)
	}
	if th, _ := a.Through(ctx, 2); th != all[24].ID {
		t.Fatalf("Through = %s, want %s", th, all[24].ID)
	}
	got, err = readAll(t, a, 2, all[15].ID)
	if err != nil || !reflect.DeepEqual(got, all[16:]) {
		t.Fatalf("read after %s: got %v, %v; want %v", all[15].ID, got, err, all[16:])
	}
	if got, _ := readAll(t, a, 1, ""); len(got) != 0 {
		t.Fatalf("partition 1 holds %d entries, want 0", len(got))
	}
}

func TestSegmentRewriteIsIdentical(t *testing.T) {
	ctx := context.Background()
	a, dir := openDir(t)
	es := entries(0, 5)
	name, err := a.WriteSegment(ctx, 0, "0-0", es)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(name)
	for k, v := range map[string]string{"a": "1", "b": "2", "c": "3"} { // map order must not matter
		es[0].Fields[k] = v
	}
	es2 := entries(0, 5)
	for _, k := range []string{"c", "a", "b"} {
		es2[0].Fields[k] = es[0].Fields[k]
	}
	n1, _ := a.WriteSegment(ctx, 0, "0-0", es)
	b1, _ := os.ReadFile(n1)
	n2, _ := a.WriteSegment(ctx, 0, "0-0", es2)
	b2, _ := os.ReadFile(n2)
	if n1 != name || n2 != name || string(b1) != string(b2) || string(before) == string(b1) {
		t.Fatalf("rewrites differ: names %s %s %s", name, n1, n2)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "p0000")); len(ents) != 1 {
		t.Fatalf("%d files in the partition, want 1 (no temporary left)", len(ents))
	}
}

func TestCorruptSegmentStopsRead(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, path string) string // returns the file the error must name
		want  string
	}{
		{"flipped byte", func(t *testing.T, path string) string {
			b, _ := os.ReadFile(path)
			b[len(b)/2] ^= 0x01
			os.WriteFile(path, b, 0o644)
			return path
		}, "checksum"},
		{"truncated", func(t *testing.T, path string) string {
			b, _ := os.ReadFile(path)
			os.WriteFile(path, b[:len(b)-30], 0o644)
			return path
		}, "truncated"},
		{"renamed to other IDs", func(t *testing.T, path string) string {
			to := strings.Replace(path, "00000000000000001005-00000000000000000002.seg", "00000000000000001005-00000000000000000001.seg", 1)
			if err := os.Rename(path, to); err != nil {
				t.Fatal(err)
			}
			return to
		}, "its name says"},
		{"not a segment name", func(t *testing.T, path string) string {
			to := filepath.Join(filepath.Dir(path), "backup.seg")
			os.Rename(path, to)
			return to
		}, "not a segment name"},
		{"missing", func(t *testing.T, path string) string {
			os.Remove(path)
			dir := filepath.Dir(path)
			ents, _ := os.ReadDir(dir)
			return filepath.Join(dir, ents[len(ents)-1].Name()) // the one after the gap
		}, "segment is missing"},
		{"moved to another partition", func(t *testing.T, path string) string {
			to := strings.Replace(path, "p0000", "p0001", 1)
			os.MkdirAll(filepath.Dir(to), 0o755)
			os.Rename(path, to)
			return to
		}, "found under partition 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, dir := openDir(t)
			all := entries(0, 18)
			write(t, a, 0, "0-0", all, 6) // segments 1000-0..1001-2, 1002-0..1003-2, 1004-0..1005-2
			ents, _ := os.ReadDir(filepath.Join(dir, "p0000"))
			victim := filepath.Join(dir, "p0000", ents[1].Name())
			if tt.name == "renamed to other IDs" {
				victim = filepath.Join(dir, "p0000", ents[2].Name())
			}
			named := tt.spoil(t, victim)
			p := 0
			if tt.name == "moved to another partition" {
				p = 1
			}
			var got int
			err := a.Read(context.Background(), p, "", func(archive.Entry) error { got++; return nil })
			if err == nil || !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), named) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want ErrCorrupt naming %s and saying %q", err, named, tt.want)
			}
			if got > 12 {
				t.Fatalf("read %d entries, more than the segments before the bad one", got)
			}
		})
	}
}

func TestCheckpoints(t *testing.T) {
	ctx := context.Background()
	a, dir := openDir(t)
	for _, c := range []archive.Checkpoint{{"1700-3", []byte("c")}, {"20-0", []byte("a")}, {"300-1", nil}} {
		if err := a.PutCheckpoint(ctx, 5, c.ID, c.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.PutCheckpoint(ctx, 5, "300-1", []byte("b")); err != nil { // replaces
		t.Fatal(err)
	}
	got, err := a.Checkpoints(ctx, 5)
	want := []archive.Checkpoint{{"20-0", []byte("a")}, {"300-1", []byte("b")}, {"1700-3", []byte("c")}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Checkpoints = %q, %v; want %q", got, err, want)
	}
	if th, _ := a.Through(ctx, 5); th != "0-0" {
		t.Fatalf("checkpoints count as segments: Through = %s", th)
	}
	path := filepath.Join(dir, "p0005", "checkpoints", "00000000000000000300-00000000000000000001.ckpt")
	b, _ := os.ReadFile(path)
	b[10] ^= 0x20
	os.WriteFile(path, b, 0o644)
	if _, err := a.Checkpoints(ctx, 5); !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("damaged checkpoint: err = %v; want ErrCorrupt naming %s", err, path)
	}
}

func TestOpenRefusesWhatItCannotWrite(t *testing.T) {
	ro := t.TempDir()
	os.Chmod(ro, 0o555)
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	tests := []string{"file://" + file + "/sub", "ftp://x/y", "file://relative/path", "s3:///prefix", "::"}
	if os.Geteuid() != 0 { // root writes anywhere
		tests = append(tests, "file://"+ro)
	}
	for _, u := range tests {
		if _, err := archive.Open(context.Background(), u); err == nil {
			t.Errorf("Open(%q) succeeded; want a refusal", u)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q): error of several lines: %q", u, err)
		}
	}
}

func TestRemoveStaleTemps(t *testing.T) {
	ctx := context.Background()
	a, dir := openDir(t)
	if _, err := a.WriteSegment(ctx, 1, "0-0", entries(0, 3)); err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(dir, "p0001")
	old, fresh := filepath.Join(pdir, ".tmp-old"), filepath.Join(pdir, ".tmp-fresh")
	os.WriteFile(old, []byte("half a segm"), 0o644)
	os.WriteFile(fresh, []byte("being written"), 0o644)
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, past, past)
	if n := a.RemoveStaleTemps(1); n != 1 {
		t.Fatalf("removed %d, want 1", n)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("the stale temporary is still there")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("a fresh temporary (a write in progress) was removed")
	}
	if got, err := readAll(t, a, 1, ""); err != nil || len(got) != 3 {
		t.Fatalf("read %d entries, %v; want 3", len(got), err)
	}
}
