package ledger

import (
	"hash/fnv"
	"strconv"
	"testing"
)

// TestKeysSpelling: the one-allocation key builders spell every key as the tag-then-name form
// (partition by hash/fnv's FNV-1a), which data already in Redis and the scripts rely on.
func TestKeysSpelling(t *testing.T) {
	for _, parts := range []int{1, 4, 16, 1000} {
		k := NewKeys("fs", parts)
		for _, item := range []string{"a", "demo", "item-42", "x.y_z", "ÿ", ""} {
			h := fnv.New32a()
			h.Write([]byte(item))
			p := int(h.Sum32() % uint32(parts))
			if got := k.Partition(item); got != p {
				t.Fatalf("Partition(%q) with %d partitions: got %d, want %d", item, parts, got, p)
			}
			tag := "fs:{p" + strconv.Itoa(p) + "}:"
			for got, want := range map[string]string{
				k.Stock(item):              tag + "stock:" + item,
				k.Rules(item):              tag + "rules:" + item,
				k.Requests(item):           tag + "requests:" + item,
				k.RequestsOld(item):        tag + "requests:" + item + ":old",
				k.Users(item):              tag + "users:" + item,
				k.Restocked(item, "1-2-3"): tag + "restocked:" + item + ":1-2-3",
				k.Events(p):                tag + "events",
			} {
				if got != want {
					t.Errorf("got key %q, want %q", got, want)
				}
			}
		}
	}
}
