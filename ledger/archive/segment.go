package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A segment file is text, one JSON document per line:
//
//	{"format":"flashsale-ledger-segment","version":1,"partition":3,"prev":"0-0","first":"...","last":"...","count":N}
//	{"id":"<stream ID>","fields":{...}}        N lines, ascending IDs, keys sorted
//	{"sha256":"<hex of every byte before this line>"}
//
// The same entries after the same prev always encode to the same bytes, so a segment written
// again after a crash is byte for byte the first one. A checkpoint file has the same frame:
// a header line, one line {"data":"<base64>"} and the checksum line.
const (
	segmentFormat    = "flashsale-ledger-segment"
	checkpointFormat = "flashsale-ledger-checkpoint"
	formatVersion    = 1
	segmentExt       = ".seg"
	checkpointExt    = ".ckpt"
)

type segmentHeader struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	Partition int    `json:"partition"`
	Prev      string `json:"prev"`
	First     string `json:"first"`
	Last      string `json:"last"`
	Count     int    `json:"count"`
}

// segmentLine is one entry. Fields that are all valid UTF-8 are written as a JSON object;
// an entry with any other byte string (Redis values are binary) is written as Bin, pairs of
// base64 key and value sorted by key, so that every entry comes back byte for byte.
type segmentLine struct {
	ID     string            `json:"id"`
	Fields map[string]string `json:"fields,omitempty"`
	Bin    [][2][]byte       `json:"bin,omitempty"`
	id     streamID
}

func newSegmentLine(id streamID, fields map[string]string) segmentLine {
	line := segmentLine{ID: id.String()}
	for k, v := range fields {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			keys := slices.Sorted(maps.Keys(fields))
			for _, k := range keys {
				line.Bin = append(line.Bin, [2][]byte{[]byte(k), []byte(fields[k])})
			}
			return line
		}
	}
	line.Fields = fields
	if line.Fields == nil {
		line.Fields = map[string]string{}
	}
	return line
}

// fields returns the entry's fields, however they were written.
func (e segmentLine) fields() (map[string]string, error) {
	if e.Bin == nil {
		if e.Fields == nil {
			return nil, errors.New("no fields")
		}
		return e.Fields, nil
	}
	if e.Fields != nil {
		return nil, errors.New("both fields and bin")
	}
	m := make(map[string]string, len(e.Bin))
	for _, kv := range e.Bin {
		m[string(kv[0])] = string(kv[1])
	}
	return m, nil
}

type trailer struct {
	SHA256 string `json:"sha256"`
}

// segment is a decoded, verified segment.
type segment struct {
	partition   int
	prev        streamID
	first, last streamID
	entries     []segmentLine
}

// encodeSegment returns the bytes and the file name of partition p's segment of entries after
// prev.
func encodeSegment(p int, prev string, entries []Entry) ([]byte, string, error) {
	if len(entries) == 0 {
		return nil, "", errors.New("archive segment: no entries")
	}
	before, ok := parseStreamID(prev)
	if !ok && prev != "" {
		return nil, "", fmt.Errorf("archive segment: prev %q: want <ms>-<seq>", prev)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	ids := make([]streamID, len(entries))
	for i, e := range entries {
		id, ok := parseStreamID(e.ID)
		if !ok {
			return nil, "", fmt.Errorf("archive segment: stream ID %q: want <ms>-<seq>", e.ID)
		}
		if !before.less(id) {
			return nil, "", fmt.Errorf("archive segment: entry %s does not follow %s", id, before)
		}
		ids[i], before = id, id
	}
	hdr := segmentHeader{
		Format: segmentFormat, Version: formatVersion, Partition: p,
		Prev: mustParse(prev).String(), First: ids[0].String(), Last: ids[len(ids)-1].String(), Count: len(entries),
	}
	if err := enc.Encode(hdr); err != nil {
		return nil, "", fmt.Errorf("archive segment: %w", err)
	}
	for i, e := range entries {
		if err := enc.Encode(newSegmentLine(ids[i], e.Fields)); err != nil {
			return nil, "", fmt.Errorf("archive segment: %w", err)
		}
	}
	seal(&buf, enc)
	return buf.Bytes(), segmentName(ids[0], ids[len(ids)-1]), nil
}

// seal appends the checksum line of everything in buf.
func seal(buf *bytes.Buffer, enc *json.Encoder) {
	sum := sha256.Sum256(buf.Bytes())
	enc.Encode(trailer{SHA256: hex.EncodeToString(sum[:])}) // a struct of one string cannot fail
}

// unseal checks the checksum line and returns the lines before it (without their newlines).
func unseal(data []byte) ([][]byte, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file")
	}
	if data[len(data)-1] != '\n' {
		return nil, errors.New("truncated: no final newline")
	}
	body := data[:len(data)-1]
	cut := bytes.LastIndexByte(body, '\n')
	if cut < 0 {
		return nil, errors.New("truncated: no checksum line")
	}
	var t trailer
	if err := strictUnmarshal(body[cut+1:], &t); err != nil || len(t.SHA256) != 2*sha256.Size {
		return nil, errors.New("truncated or damaged: last line is not a checksum")
	}
	sum := sha256.Sum256(data[:cut+1])
	if hex.EncodeToString(sum[:]) != t.SHA256 {
		return nil, errors.New("checksum mismatch: the file was changed or damaged")
	}
	return bytes.Split(body[:cut], []byte{'\n'}), nil
}

// decodeSegment verifies data and returns its segment.
func decodeSegment(data []byte) (segment, error) {
	lines, err := unseal(data)
	if err != nil {
		return segment{}, err
	}
	var h segmentHeader
	if err := strictUnmarshal(lines[0], &h); err != nil {
		return segment{}, fmt.Errorf("header: %v", err)
	}
	if h.Format != segmentFormat || h.Version != formatVersion {
		return segment{}, fmt.Errorf("header: format %q version %d, want %q version %d", h.Format, h.Version, segmentFormat, formatVersion)
	}
	s := segment{partition: h.Partition}
	var okPrev, okFirst, okLast bool
	s.prev, okPrev = parseStreamID(h.Prev)
	s.first, okFirst = parseStreamID(h.First)
	s.last, okLast = parseStreamID(h.Last)
	if !okPrev || !okFirst || !okLast || h.Count != len(lines)-1 || h.Count < 1 {
		return segment{}, fmt.Errorf("header: prev %q first %q last %q count %d for %d entries", h.Prev, h.First, h.Last, h.Count, len(lines)-1)
	}
	before := s.prev
	s.entries = make([]segmentLine, 0, h.Count)
	for i, line := range lines[1:] {
		var e segmentLine
		if err := strictUnmarshal(line, &e); err != nil {
			return segment{}, fmt.Errorf("entry %d: %v", i+1, err)
		}
		id, ok := parseStreamID(e.ID)
		if !ok || !before.less(id) {
			return segment{}, fmt.Errorf("entry %d: stream ID %q does not follow %s", i+1, e.ID, before)
		}
		if e.Fields, err = e.fields(); err != nil {
			return segment{}, fmt.Errorf("entry %d: %v", i+1, err)
		}
		e.Bin = nil
		e.id, before = id, id
		s.entries = append(s.entries, e)
	}
	if s.entries[0].id != s.first || before != s.last {
		return segment{}, fmt.Errorf("header says %s..%s, entries are %s..%s", s.first, s.last, s.entries[0].id, before)
	}
	return s, nil
}

// matches checks that the segment is the one its name and place say.
func (s segment) matches(p int, ref segmentRef) error {
	if s.partition != p {
		return fmt.Errorf("holds partition %d, found under partition %d", s.partition, p)
	}
	if s.first != ref.first || s.last != ref.last {
		return fmt.Errorf("holds entries %s..%s, its name says %s..%s", s.first, s.last, ref.first, ref.last)
	}
	return nil
}

type checkpointHeader struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	Partition int    `json:"partition"`
	ID        string `json:"id"`
}

type checkpointBody struct {
	Data []byte `json:"data"`
}

func encodeCheckpoint(p int, id string, data []byte) ([]byte, string, error) {
	sid, ok := parseStreamID(id)
	if !ok {
		return nil, "", fmt.Errorf("archive checkpoint: stream ID %q: want <ms>-<seq>", id)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(checkpointHeader{Format: checkpointFormat, Version: formatVersion, Partition: p, ID: sid.String()}); err != nil {
		return nil, "", fmt.Errorf("archive checkpoint: %w", err)
	}
	if err := enc.Encode(checkpointBody{Data: data}); err != nil {
		return nil, "", fmt.Errorf("archive checkpoint: %w", err)
	}
	seal(&buf, enc)
	return buf.Bytes(), sid.padded() + checkpointExt, nil
}

func decodeCheckpoint(body []byte, p int, id streamID) (Checkpoint, error) {
	lines, err := unseal(body)
	if err != nil {
		return Checkpoint{}, err
	}
	if len(lines) != 2 {
		return Checkpoint{}, fmt.Errorf("%d lines before the checksum, want 2", len(lines))
	}
	var h checkpointHeader
	if err := strictUnmarshal(lines[0], &h); err != nil {
		return Checkpoint{}, fmt.Errorf("header: %v", err)
	}
	if h.Format != checkpointFormat || h.Version != formatVersion {
		return Checkpoint{}, fmt.Errorf("header: format %q version %d, want %q version %d", h.Format, h.Version, checkpointFormat, formatVersion)
	}
	if h.Partition != p || h.ID != id.String() {
		return Checkpoint{}, fmt.Errorf("holds partition %d at %s, its place says partition %d at %s", h.Partition, h.ID, p, id)
	}
	var c checkpointBody
	if err := strictUnmarshal(lines[1], &c); err != nil {
		return Checkpoint{}, fmt.Errorf("data: %v", err)
	}
	if c.Data == nil {
		c.Data = []byte{}
	}
	return Checkpoint{ID: id.String(), Data: c.Data}, nil
}

func strictUnmarshal(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// streamID is a Redis stream ID, <ms>-<seq>.
type streamID struct{ ms, seq uint64 }

// parseStreamID accepts only the canonical spelling Redis writes: two decimals without sign
// or leading zeros.
func parseStreamID(s string) (streamID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	a, okA := canonicalUint(ms)
	b, okB := canonicalUint(seq)
	return streamID{a, b}, okA && okB
}

func mustParse(s string) streamID {
	id, _ := parseStreamID(s)
	return id
}

func canonicalUint(s string) (uint64, bool) {
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

func (a streamID) String() string { return fmt.Sprintf("%d-%d", a.ms, a.seq) }

// padded spells the ID with both parts zero-padded to 20 digits, so that names sort as IDs.
func (a streamID) padded() string { return fmt.Sprintf("%020d-%020d", a.ms, a.seq) }

func (a streamID) less(b streamID) bool { return a.compare(b) < 0 }

func (a streamID) compare(b streamID) int {
	switch {
	case a.ms != b.ms:
		if a.ms < b.ms {
			return -1
		}
		return 1
	case a.seq != b.seq:
		if a.seq < b.seq {
			return -1
		}
		return 1
	}
	return 0
}

func maxID(a, b streamID) streamID {
	if a.less(b) {
		return b
	}
	return a
}

func segmentName(first, last streamID) string {
	return first.padded() + "_" + last.padded() + segmentExt
}

func parsePadded(s string) (streamID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok || len(ms) != 20 || len(seq) != 20 {
		return streamID{}, false
	}
	a, errA := strconv.ParseUint(ms, 10, 64)
	b, errB := strconv.ParseUint(seq, 10, 64)
	if errA != nil || errB != nil || ms[0] == '+' || seq[0] == '+' {
		return streamID{}, false
	}
	return streamID{a, b}, true
}

func parseSegmentName(name string) (first, last streamID, ok bool) {
	base, found := strings.CutSuffix(name, segmentExt)
	a, b, cut := strings.Cut(base, "_")
	if !found || !cut {
		return first, last, false
	}
	first, okA := parsePadded(a)
	last, okB := parsePadded(b)
	return first, last, okA && okB && !last.less(first)
}

func parseCheckpointName(name string) (streamID, bool) {
	base, found := strings.CutSuffix(name, checkpointExt)
	if !found {
		return streamID{}, false
	}
	return parsePadded(base)
}
