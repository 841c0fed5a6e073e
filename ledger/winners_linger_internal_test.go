package ledger

import "testing"

// The tail waits after a read that returned new entries, unless a partition returned a full
// page (more are waiting) or nothing came at all (the read already waited its block time).
func TestTailLingers(t *testing.T) {
	for _, c := range []struct {
		got  []int
		want bool
	}{
		{[]int{0, 0}, false},
		{[]int{3, 0}, true},
		{[]int{0, 1}, true},
		{[]int{winnerCount, 2}, false},
		{[]int{winnerCount - 1}, true},
	} {
		if got := lingers(c.got); got != c.want {
			t.Errorf("lingers(%v) = %v, want %v", c.got, got, c.want)
		}
	}
}
