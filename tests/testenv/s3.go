package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// S3 is a running S3-speaking server (gofakes3, its own process, over HTTP) with one bucket.
type S3 struct {
	Endpoint string // http://127.0.0.1:port
	Bucket   string
	// Env points a flashsale process (or archive.OpenEnv) at it.
	Env map[string]string
}

// EnvList is Env as KEY=VALUE strings, for a process's environment.
func (s *S3) EnvList() []string {
	var out []string
	for k, v := range s.Env {
		out = append(out, k+"="+v)
	}
	return out
}

// Getenv reads Env.
func (s *S3) Getenv(k string) string { return s.Env[k] }

// StartS3 starts the gofakes3 server built by scripts/testenv.sh (FLASHSALE_TEST_GOFAKES3)
// on a free port with an in-memory bucket; it stops with t.Cleanup. Without the binary the
// test is skipped with the command that builds it.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := os.Getenv("FLASHSALE_TEST_GOFAKES3")
	if bin == "" {
		t.Skip("FLASHSALE_TEST_GOFAKES3 unset: run the tests through scripts/testenv.sh, which builds the gofakes3 server once")
	}
	const bucket = "flashsale"
	for attempt := 0; ; attempt++ {
		port := FreePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		log, err := os.Create(filepath.Join(t.TempDir(), "gofakes3.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-backend", "memory", "-initialbucket", bucket, "-host", addr)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start gofakes3: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		up := false
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !up; {
			select {
			case <-exited:
				deadline = time.Time{}
				continue
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				up = true
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !up {
			stop()
			out, _ := os.ReadFile(log.Name())
			if attempt < 3 && strings.Contains(string(out), "address already in use") {
				continue
			}
			t.Fatalf("gofakes3 on %s did not answer:\n%s", addr, out)
		}
		t.Cleanup(stop)
		endpoint := "http://" + addr
		return &S3{Endpoint: endpoint, Bucket: bucket, Env: map[string]string{
			"AWS_ENDPOINT_URL":      endpoint,
			"AWS_ACCESS_KEY_ID":     "flashsale-test",
			"AWS_SECRET_ACCESS_KEY": "flashsale-test-secret",
			"AWS_REGION":            "us-east-1",
		}}
	}
}
