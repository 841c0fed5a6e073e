package tests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is one running flashsale process. Its stdout and stderr are kept in out and shown
// in the test log when the test fails; t.Cleanup kills it (SIGKILL) if it still runs.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
}

// logBuffer is an io.Writer safe for the two output copiers and the test goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// baseEnv is the test's environment without FLASHSALE_* variables, so that nothing of the
// developer's setup leaks into the processes under test.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLASHSALE_") {
			env = append(env, kv)
		}
	}
	return env
}

// startProcess starts `flashsale args...` with env added to the base environment.
func startProcess(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(flashsaleBin, args...)
	cmd.Env = append(baseEnv(), env...)
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("output of %s (%s):\n%s", name, strings.Join(args, " "), out.String())
		}
	})
	return p
}

// kill stops the process with SIGKILL, as a crash would, and waits for it.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// signal sends sig to the process.
func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// wait waits up to timeout for the process to exit and returns its exit code (-1 when a
// signal ended it); ok is false when it still runs.
func (p *process) wait(timeout time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog waits until the output matches re and returns the submatches of the first match.
func (p *process) waitLog(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		if p.exited() {
			t.Fatalf("%s exited (code %d) before logging %q", p.name, p.cmd.ProcessState.ExitCode(), re)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s", p.name, re, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runCode runs `flashsale args...` and returns its output and exit code.
func runCode(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, flashsaleBin, args...)
	cmd.Env = append(baseEnv(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("flashsale %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// runCmd runs `flashsale args...` to completion and returns its standard output; a non-zero
// exit fails the test.
func runCmd(t *testing.T, env []string, args ...string) string {
	t.Helper()
	stdout, stderr, code := runCode(t, env, args...)
	if code != 0 {
		t.Fatalf("flashsale %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

var (
	httpListening = regexp.MustCompile(`msg="http listening" addr=(\S+)`)
	grpcListening = regexp.MustCompile(`msg="grpc listening" addr=(\S+)`)
	claimedLog    = regexp.MustCompile(`msg="claimed idle entries"`)
	writeRetried  = regexp.MustCompile(`msg=retrying .*op=write`)
)

// server is a running `flashsale serve`.
type server struct {
	*process
	httpAddr, grpcAddr string
}

// url returns the server's HTTP URL for path.
func (s *server) url(path string) string { return "http://" + s.httpAddr + path }

// startServe starts `flashsale serve args...` with dsn as its MySQL and waits until it
// listens.
func startServe(t *testing.T, st *stack, dsn string, args ...string) *server {
	t.Helper()
	p := startProcess(t, "serve", st.env(dsn), append([]string{"serve"}, args...)...)
	srv := &server{process: p}
	srv.httpAddr = p.waitLog(t, httpListening, 15*time.Second)[1]
	srv.grpcAddr = p.waitLog(t, grpcListening, 15*time.Second)[1]
	return srv
}

// startProject starts `flashsale project args...` on the stack's MySQL database.
func startProject(t *testing.T, st *stack, args ...string) *process {
	t.Helper()
	return startProcess(t, "project", st.env(st.dsn), append([]string{"project"}, args...)...)
}
