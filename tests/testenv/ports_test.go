package testenv

import "testing"

// Ports handed to servers lie outside the kernel's ephemeral range, which outgoing
// connections and listeners on port 0 draw from, and are not handed out twice; a cluster
// node's bus port (+10000) is usable too.
func TestPortsOutsideEphemeralRange(t *testing.T) {
	lo, hi := EphemeralRange()
	inRange := func(p int) bool { return p >= lo && p <= hi }
	seen := map[int]bool{}
	for range 300 {
		p := FreePort(t)
		if inRange(p) || seen[p] {
			t.Fatalf("FreePort gave %d: in the ephemeral range %d-%d, or twice", p, lo, hi)
		}
		seen[p] = true
	}
	for range 100 {
		p := clusterPort(t)
		if inRange(p) || inRange(p+10000) || p+10000 > 65535 || seen[p] {
			t.Fatalf("clusterPort gave %d (bus %d): ephemeral range %d-%d", p, p+10000, lo, hi)
		}
		seen[p] = true
	}
}
