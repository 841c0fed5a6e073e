package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain gives the tests a HOME of their own: a command run without -archive archives under
// $HOME/.local/share/flashsale (defaultArchive), which must not be the machine's.
func TestMain(m *testing.M) {
	os.Exit(withHome(m))
}

func withHome(m *testing.M) int {
	home, err := os.MkdirTemp("", "flashsale-cmd-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp HOME:", err)
		return 1
	}
	defer os.RemoveAll(home)
	os.Setenv("HOME", home)
	os.Unsetenv("XDG_DATA_HOME")
	return m.Run()
}
