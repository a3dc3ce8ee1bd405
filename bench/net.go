package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferry-sync/ferry/transport"
)

// NetConfig is the server workload: ferry push and pull through a real
// `ferry serve` on 127.0.0.1, against a raw QUIC byte copy in the same run.
type NetConfig struct {
	Ferry string
	Work  string
	// Size of the large random file (default 1 GiB).
	Size int64
	// SourceFiles in the source-like tree (default 3,000).
	SourceFiles int
	// Clients push at once in the concurrency step (default 50), each
	// ClientSize bytes (default 8 MiB).
	Clients    int
	ClientSize int64
	Runs       int
	Log        func(string)
}

func (c *NetConfig) applyDefaults() {
	if c.Size == 0 {
		c.Size = 1 << 30
	}
	if c.SourceFiles == 0 {
		c.SourceFiles = 3000
	}
	if c.Clients == 0 {
		c.Clients = 50
	}
	if c.ClientSize == 0 {
		c.ClientSize = 8 << 20
	}
	if c.Runs == 0 {
		c.Runs = 3
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
}

// Server is a `ferry serve` process started by a workload.
type Server struct {
	cmd         *exec.Cmd
	Data        string
	Addr        string
	Fingerprint string
	done        chan error
}

// Pid is the server process's.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// StartServer starts `ferry serve` on 127.0.0.1 and waits for its ready
// line.
func StartServer(ctx context.Context, ferry, data string) (*Server, error) {
	return startServer(exec.CommandContext(ctx, ferry, "--json", "-q", "serve", "--data", data, "--listen", "127.0.0.1:0"), data)
}

var serverProfiles atomic.Int32

// startServer runs cmd, a `ferry --json serve`, and waits for its ready
// line.
func startServer(cmd *exec.Cmd, data string) (*Server, error) {
	cmd.Env = append(append(os.Environ(), cmd.Env...), "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true")
	// FERRY_BENCH_SERVER_CPUPROFILE profiles the servers a benchmark
	// starts, apart from its clients: the first writes the file named,
	// the next ones that name with .2, .3, ... appended.
	if p := os.Getenv("FERRY_BENCH_SERVER_CPUPROFILE"); p != "" {
		if n := serverProfiles.Add(1); n > 1 {
			p = fmt.Sprintf("%s.%d", p, n)
		}
		cmd.Env = append(cmd.Env, "FERRY_CPUPROFILE="+p)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{cmd: cmd, Data: data, done: make(chan error, 1)}
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		cmd.Process.Kill()
		return nil, fmt.Errorf("ferry serve did not start: %v", cmd.Wait())
	}
	var info struct {
		Addr        string `json:"addr"`
		Fingerprint string `json:"fingerprint"`
	}
	if err := json.Unmarshal(sc.Bytes(), &info); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("ferry serve: %q: %w", sc.Text(), err)
	}
	s.Addr, s.Fingerprint = info.Addr, info.Fingerprint
	go func() {
		for sc.Scan() {
		}
		s.done <- cmd.Wait()
	}()
	return s, nil
}

// Stop ends the server with SIGTERM.
func (s *Server) Stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		return err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		return <-s.done
	}
}

// PeakRSS is the server's peak resident memory so far (VmHWM).
func (s *Server) PeakRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// Token makes a token on the server through its data directory.
func (s *Server) Token(ctx context.Context, ferry, ns, perm string) (string, error) {
	m, err := Exec(ctx, nil, ferry, "token", "create", "--data", s.Data, "--namespace", ns, "--perm", perm)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(strings.SplitN(m.Stdout, "\n", 2)[0]), nil
}

// URL is the server's URL for a namespace.
func (s *Server) URL(ns string) string { return "quic://" + s.Addr + "/" + ns }

// netPush is the part of `ferry push --json` the workload reads.
type netPush struct {
	BytesSent int64 `json:"bytes_sent"`
	UpToDate  bool  `json:"up_to_date"`
}

// RunNet measures pushes through a real server against raw QUIC copies.
func RunNet(ctx context.Context, c NetConfig) (*Report, error) {
	c.applyDefaults()
	cleanup, err := scratch(&c.Work, "ferry-bench-net-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rep := &Report{Title: "ferry over QUIC on 127.0.0.1", Date: time.Now(), Machine: Machine(), Tools: map[string]string{"ferry": version(ctx, c.Ferry)}}
	srv, err := StartServer(ctx, c.Ferry, filepath.Join(c.Work, "data"))
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	cert, _, err := transport.LoadOrCreateCert(srv.Data)
	if err != nil {
		return nil, err
	}

	big := fmt.Sprintf("one %s random file", Human(c.Size))
	c.Log("raw QUIC copies")
	var raw [2]Measure
	for i, streams := range []int{1, 8} {
		raw[i], err = median(c.Runs, func() (Measure, error) {
			d, err := transport.LoopbackCopy(ctx, cert, c.Size, streams)
			return Measure{Wall: d}, err
		})
		if err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, Row{Workload: big, Step: fmt.Sprintf("raw copy, %d stream(s)", streams), Tool: "quic-go", Median: raw[i], Runs: c.Runs, Bytes: c.Size,
			Note: "same TLS and windows as ferry, no protocol; both ends in one process"})
	}

	c.Log("writing the large file")
	bigDir := filepath.Join(c.Work, "big")
	if err := writeRandom(filepath.Join(bigDir, "big.bin"), 3, c.Size); err != nil {
		return nil, err
	}
	n := 0
	pushFresh := func(dir string, streams int) (Measure, netPush, error) {
		n++
		ns := fmt.Sprintf("b%d", n)
		tok, err := srv.Token(ctx, c.Ferry, ns, "write")
		if err != nil {
			return Measure{}, netPush{}, err
		}
		os.RemoveAll(filepath.Join(dir, ".ferry"))
		env := []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.Fingerprint}
		if _, err := Exec(ctx, env, c.Ferry, "init", dir, "--remote", srv.URL(ns), "--root", "bench"); err != nil {
			return Measure{}, netPush{}, err
		}
		m, err := Exec(ctx, nil, c.Ferry, "--json", "--streams", strconv.Itoa(streams), "push", dir)
		var p netPush
		if err == nil {
			err = json.Unmarshal([]byte(m.Stdout), &p)
		}
		return m, p, err
	}
	for i, streams := range []int{1, 8} {
		c.Log(fmt.Sprintf("ferry push, %d stream(s)", streams))
		var sent int64
		m, err := median(c.Runs, func() (Measure, error) {
			m, p, err := pushFresh(bigDir, streams)
			sent = p.BytesSent
			return m, err
		})
		if err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, Row{Workload: big, Step: fmt.Sprintf("initial push, %d stream(s)", streams), Tool: "ferry", Median: m, Runs: c.Runs, Bytes: sent,
			Note: fmt.Sprintf("%.0f MB/s", float64(c.Size)/m.Wall.Seconds()/1e6)})
		rep.Ratios = append(rep.Ratios, Ratio{What: fmt.Sprintf("initial push throughput / raw QUIC copy, %d stream(s)", streams), Value: raw[i].Wall.Seconds() / m.Wall.Seconds(), Target: ">= 0.7"})
	}

	// A 100-byte insert in the middle, pushed to the last namespace.
	c.Log("100-byte insert")
	if err := insertMiddle(filepath.Join(bigDir, "big.bin"), 100); err != nil {
		return nil, err
	}
	m, err := Exec(ctx, nil, c.Ferry, "--json", "push", bigDir)
	if err != nil {
		return nil, err
	}
	var ins netPush
	json.Unmarshal([]byte(m.Stdout), &ins)
	rep.Rows = append(rep.Rows, Row{Workload: big, Step: "push after a 100-byte insert in the middle", Tool: "ferry", Median: m, Runs: 1, Bytes: ins.BytesSent,
		Note: "bytes on the wire (chunks, file object, trees, version)"})
	rep.Ratios = append(rep.Ratios, Ratio{What: "bytes on the wire after a 100-byte insert / mean chunk size (768 KiB)", Value: float64(ins.BytesSent) / (768 << 10), Target: "< 3"})
	os.RemoveAll(bigDir)

	// A source-like tree.
	c.Log("source tree")
	srcDir := filepath.Join(c.Work, "src")
	srcBytes, err := writeSourceTree(srcDir, c.SourceFiles, 5)
	if err != nil {
		return nil, err
	}
	rawSrc, err := median(c.Runs, func() (Measure, error) {
		d, err := transport.LoopbackCopy(ctx, cert, srcBytes, 8)
		return Measure{Wall: d}, err
	})
	if err != nil {
		return nil, err
	}
	srcWork := fmt.Sprintf("source tree, %d files, %s", c.SourceFiles, Human(srcBytes))
	rep.Rows = append(rep.Rows, Row{Workload: srcWork, Step: "raw copy of the same bytes, 8 streams", Tool: "quic-go", Median: rawSrc, Runs: c.Runs, Bytes: srcBytes})
	var srcSent int64
	srcPush, err := median(c.Runs, func() (Measure, error) {
		m, p, err := pushFresh(srcDir, 8)
		srcSent = p.BytesSent
		return m, err
	})
	if err != nil {
		return nil, err
	}
	rep.Rows = append(rep.Rows, Row{Workload: srcWork, Step: "initial push", Tool: "ferry", Median: srcPush, Runs: c.Runs, Bytes: srcSent, Note: "text compresses: fewer bytes cross than the tree holds"})
	rep.Ratios = append(rep.Ratios, Ratio{What: "source tree push throughput / raw QUIC copy of its bytes", Value: rawSrc.Wall.Seconds() / srcPush.Wall.Seconds(), Target: ">= 0.7"})

	// Many clients at once.
	c.Log(fmt.Sprintf("%d clients pushing at once", c.Clients))
	before := srv.PeakRSS()
	var dirs []string
	for i := range c.Clients {
		d := filepath.Join(c.Work, fmt.Sprintf("client%02d", i))
		if err := writeRandom(filepath.Join(d, "data.bin"), uint64(100+i), c.ClientSize); err != nil {
			return nil, err
		}
		ns := fmt.Sprintf("c%d", i)
		tok, err := srv.Token(ctx, c.Ferry, ns, "write")
		if err != nil {
			return nil, err
		}
		if _, err := Exec(ctx, []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.Fingerprint}, c.Ferry, "init", d, "--remote", srv.URL(ns)); err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(dirs))
	for _, d := range dirs {
		wg.Go(func() {
			if _, err := Exec(ctx, nil, c.Ferry, "push", d); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	wall := time.Since(start)
	peak := srv.PeakRSS()
	rep.Rows = append(rep.Rows, Row{Workload: fmt.Sprintf("%d clients x %s", c.Clients, Human(c.ClientSize)), Step: "concurrent initial pushes", Tool: "ferry serve",
		Median: Measure{Wall: wall, MaxRSS: peak}, Runs: 1, Bytes: int64(c.Clients) * c.ClientSize,
		Note: fmt.Sprintf("server peak RSS (VmHWM) %s, before the step %s", Human(peak), Human(before))})
	return rep, nil
}

// insertMiddle inserts n seeded bytes into the middle of a file.
func insertMiddle(path string, n int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ins := make([]byte, n)
	rand.NewChaCha8([32]byte{9}).Read(ins)
	mid := len(b) / 2
	out := append(append(append(make([]byte, 0, len(b)+n), b[:mid]...), ins...), b[mid:]...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return err
	}
	old := time.Now().Add(-time.Hour)
	return os.Chtimes(path, old, old)
}

var words = strings.Fields(`func return if else for range var const type struct interface package import
	err nil ctx context error string int64 byte len append make map chan select case default defer go
	Write Read Close Open Sync Get Put Has Ref Tree Entry Version Chunk Store Flush Scan Restore`)

// writeSourceTree writes files of source-like text (identifier soup,
// indented lines) with sizes from 200 B to about 60 KB, 100 to a
// directory, seeded; it returns the total size.
func writeSourceTree(dir string, files int, seed uint64) (int64, error) {
	r := rand.New(rand.NewPCG(seed, seed+1))
	old := time.Now().Add(-time.Hour)
	var total int64
	for i := range files {
		d := filepath.Join(dir, fmt.Sprintf("pkg%02d", i/100), fmt.Sprintf("sub%d", i/10%10))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
		size := int(200 * (1 + r.ExpFloat64()*40))
		var b strings.Builder
		for b.Len() < size {
			b.WriteString(strings.Repeat("\t", r.IntN(4)))
			for range 3 + r.IntN(8) {
				b.WriteString(words[r.IntN(len(words))])
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "// %d\n", r.IntN(1000))
		}
		p := filepath.Join(d, fmt.Sprintf("file%04d.go", i))
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			return 0, err
		}
		os.Chtimes(p, old, old)
		total += int64(b.Len())
	}
	return total, nil
}
