// Package s3test starts a real S3 server for tests: versitygw (Apache-2.0)
// with its posix backend in a temporary directory, on 127.0.0.1. .ci/run
// installs it (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0).
package s3test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Credentials of the gateway's root account.
const (
	AccessKey = "ferrytest"
	SecretKey = "ferrytestsecret0123456789"
	Region    = "us-east-1"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	// Dir is the posix backend's root: each bucket is a directory in it.
	Dir       string
	bin, addr string
	cmd       *exec.Cmd
	done      chan struct{}
	logs      *syncBuffer
}

// Binary finds versitygw: on PATH, or where go install puts it.
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw is not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0; .ci/run does): %w", err)
	}
	return p, nil
}

// Start runs versitygw until the test ends, with bucket made. It fails
// the test, saying why, when versitygw is missing or does not start.
func Start(t testing.TB, bucket string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if bucket != "" {
		// The posix backend's buckets are its root's directories.
		if err := os.Mkdir(filepath.Join(dir, bucket), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir, bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", port), logs: &syncBuffer{}}
	t.Cleanup(s.Stop)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Restart starts the server again on its address and directory (after
// Stop), and waits until it accepts connections, at most 20 s.
func (s *Server) Restart() error {
	s.cmd = exec.Command(s.bin, "--access", AccessKey, "--secret", SecretKey, "--region", Region, "--port", s.addr, "--quiet", "posix", s.Dir)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	done := make(chan struct{})
	s.done = done
	cmd := s.cmd
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("versitygw exited at start:\n%s", s.logs)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not listen on %s in 20s:\n%s", s.addr, s.logs)
		}
	}
}

// Stop kills the server (idempotent).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Env is the environment that points the AWS SDK's default chain at the
// server.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey, "AWS_REGION=" + Region}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
