package tests

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// replyCutter forwards TCP connections from a local port to a server and, once armed, cuts
// the connection that is about to deliver the first reply containing marker: the server has
// acted on the command, the client never sees the reply. This is what a crash of the server
// right after it wrote the reply, or a network failure, does to a client.
type replyCutter struct {
	Addr   string
	target string
	marker []byte
	ln     net.Listener
	armed  atomic.Bool
	cuts   atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startReplyCutter listens on a free 127.0.0.1 port and forwards to target; t.Cleanup stops
// it and closes every connection.
func startReplyCutter(t *testing.T, target string, marker []byte) *replyCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reply cutter listen: %v", err)
	}
	c := &replyCutter{Addr: ln.Addr().String(), target: target, marker: marker, ln: ln, conns: map[net.Conn]struct{}{}}
	c.wg.Go(c.accept)
	t.Cleanup(func() {
		ln.Close()
		c.mu.Lock()
		for conn := range c.conns {
			conn.Close()
		}
		c.mu.Unlock()
		c.wg.Wait()
	})
	return c
}

// arm makes the cutter cut the next reply that contains its marker.
func (c *replyCutter) arm() { c.armed.Store(true) }

func (c *replyCutter) accept() {
	for {
		down, err := c.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", c.target)
		if err != nil {
			down.Close()
			continue
		}
		c.mu.Lock()
		c.conns[down], c.conns[up] = struct{}{}, struct{}{}
		c.mu.Unlock()
		c.wg.Go(func() {
			io.Copy(up, down)
			c.close(up, down)
		})
		c.wg.Go(func() {
			c.replies(down, up)
			c.close(up, down)
		})
	}
}

// replies copies the server's replies to the client until a read or write fails, or until
// it cuts a reply.
func (c *replyCutter) replies(down, up net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if bytes.Contains(buf[:n], c.marker) && c.armed.CompareAndSwap(true, false) {
				c.cuts.Add(1)
				return
			}
			if _, werr := down.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *replyCutter) close(conns ...net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
		delete(c.conns, conn)
	}
}
