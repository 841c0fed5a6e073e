// Package tests holds flashsale's end-to-end and chaos tests: they build the flashsale binary
// once, start it as real processes against a private redis-server and a private MySQL
// database per test, break things (kill -9, cut MySQL, SIGTERM mid-burst) and check that every
// acknowledged order ends up in MySQL exactly once.
package tests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// flashsaleBin is the binary built by TestMain.
var flashsaleBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "flashsale-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	flashsaleBin = filepath.Join(dir, "flashsale")
	build := exec.Command("go", "build", "-o", flashsaleBin, "./cmd/flashsale")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "tests: go build ./cmd/flashsale: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
