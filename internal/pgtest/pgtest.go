// Package pgtest starts a real PostgreSQL for tests: Debian's postgresql-15
// (initdb and postgres), a temporary cluster owned by the postgres user
// (PostgreSQL refuses to run as root), on 127.0.0.1 with its socket in the
// cluster's directory. .ci/run installs the package when it is missing.
package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is the cluster's superuser; it logs in without a password (trust
// on 127.0.0.1 and the socket only).
const User = "ferry"

// Server is a running PostgreSQL cluster.
type Server struct {
	Dir  string // the cluster: data in Dir/data, socket in Dir
	Port int
	bin  string
	cred *syscall.Credential
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
	dbs  int // databases NewDB made
}

// Bin finds PostgreSQL's server binaries (initdb, postgres).
func Bin() (string, error) {
	for _, d := range []string{"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"} {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("PostgreSQL is not installed (apt-get install postgresql-15; .ci/run does)")
}

// Start makes a cluster and runs it until the test ends. It fails the test,
// saying why, when PostgreSQL is missing or does not start.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Bin()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{bin: bin, logs: &syncBuffer{}}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are root's and closed to postgres.
	if s.Dir, err = os.MkdirTemp("", "ferry-pg-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.Dir) })
	if s.cred != nil {
		if err := os.Chown(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	initdb := s.command("initdb", "-D", filepath.Join(s.Dir, "data"), "-U", User, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	t.Cleanup(s.Stop)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	// Its own process group: a kill takes the postmaster and every
	// backend at once, as a crash of the machine would.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	return cmd
}

// DSN is a libpq connection string for database db.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", s.Port, User, db)
}

// Restart starts the server (again, after Stop or a Kill: the cluster
// recovers from its WAL) and waits until it answers queries, at most 30 s.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := s.command("postgres", "-D", filepath.Join(s.Dir, "data"), "-k", s.Dir, "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			err = c.Ping(ctx)
			c.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("postgres exited at start:\n%s", s.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not answer in 30s: %v\n%s", err, s.logs)
		}
	}
}

// Kill stops the server at once (SIGKILL of the postmaster: a crash, not
// a shutdown); Restart brings it back.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signal(syscall.SIGKILL)
}

// Stop shuts the server down fast (idempotent).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signal(syscall.SIGINT)
}

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	pgid := s.cmd.Process.Pid
	if sig == syscall.SIGKILL {
		syscall.Kill(-pgid, sig)
	} else {
		s.cmd.Process.Signal(sig)
	}
	<-s.done
	// The backends leave with the postmaster; a restart must not find
	// one still holding the cluster's shared memory. Wait (bounded) until
	// the process group is empty.
	for i := 0; i < 1000 && syscall.Kill(-pgid, 0) == nil; i++ {
		time.Sleep(5 * time.Millisecond)
	}
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

// NewDB creates an empty database of its own and returns its DSN: tests
// that share one cluster do not see each other's rows.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("ferry%d", s.dbs)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return s.DSN(name)
}
