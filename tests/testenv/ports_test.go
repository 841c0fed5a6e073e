package testenv

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

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

// scripts/lib.sh's free_port, which picks the throwaway MariaDB's port, avoids the ephemeral
// range too.
func TestShellFreePortOutsideEphemeralRange(t *testing.T) {
	lo, hi := EphemeralRange()
	out, err := exec.Command("bash", "-c", `. ../../scripts/lib.sh && for i in $(seq 300); do free_port; done`).CombinedOutput()
	if err != nil {
		t.Fatalf("free_port: %v\n%s", err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		p, err := strconv.Atoi(f)
		if err != nil || p < 1024 || p > 65535 || p >= lo && p <= hi {
			t.Fatalf("free_port gave %q: not a port outside the ephemeral range %d-%d", f, lo, hi)
		}
	}
}

// A MariaDB that cannot bind its port is reported as that, at once, and mariadb_start returns
// 2 so that scripts/testenv.sh starts it again on another port (it used to say "did not answer
// within 60 s").
func TestMariaDBStartReportsBindFailure(t *testing.T) {
	for _, bin := range []string{"mariadbd", "mariadb-install-db", "mariadb"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + bin); err != nil {
				t.Skipf("%s not installed (scripts/testenv.sh installs it when it needs a throwaway MariaDB)", bin)
			}
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dir := t.TempDir()
	script := `. ../../scripts/lib.sh
mariadb_init "$1/mysql" "$1/install.log" >/dev/null
rc=0; mariadb_start "$1/mysql" "$1" "$2" || rc=$?
echo "rc=$rc"
[ -z "$MARIADB_PID" ] || kill "$MARIADB_PID"`
	out, _ := exec.Command("bash", "-c", script, "bash", dir, port).CombinedOutput()
	if !strings.Contains(string(out), "rc=2") || !strings.Contains(string(out), "address already in use") || strings.Contains(string(out), "within 60 s") {
		t.Fatalf("mariadb_start on a taken port: want rc=2 and \"address already in use\", got:\n%s", out)
	}
}
