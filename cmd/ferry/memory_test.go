package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// vmHWM is a process's peak resident set, from /proc.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("peak memory of the server needs /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// plainBinary builds ferry as people run it, without the race detector
// or coverage the test binary may carry.
func plainBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building ferry (the test needs the go command): %v\n%s", err, out)
	}
	return bin
}

// TestServerMemoryCeiling: 50 clients, each its own namespace, push at
// once to a real ferry serve (D7). The server's peak resident set stays
// under the ceiling it reports for 50 connections: its caches and
// memtables, its upload and download budgets, and each connection's
// receive window. FERRY_MEM_CLIENT_MB sets each client's data (default
// 8; the closing note's figure used 200).
func TestServerMemoryCeiling(t *testing.T) {
	const clients = 50
	mb := 8
	if v := os.Getenv("FERRY_MEM_CLIENT_MB"); v != "" {
		var err error
		if mb, err = strconv.Atoi(v); err != nil {
			t.Fatalf("FERRY_MEM_CLIENT_MB=%q: %v", v, err)
		}
	}
	tmp := t.TempDir()
	// The ceiling is that of the binary people run: the race detector's
	// shadow memory (five to ten times the heap) is not the server's.
	bin := plainBinary(t, tmp)
	srv := startServeWrapped(t, filepath.Join(tmp, "data"), "127.0.0.1:0", nil, func(c *exec.Cmd) *exec.Cmd {
		c.Path, c.Args[0] = bin, bin
		return c
	})
	type client struct{ dir, env0 string }
	cs := make([]client, clients)
	for i := range cs {
		ns := fmt.Sprintf("tenant%02d", i)
		cs[i].dir = filepath.Join(tmp, ns)
		for f := 0; f < mb; f += 4 {
			randomFile(t, filepath.Join(cs[i].dir, fmt.Sprintf("f%03d", f)), min(4, mb-f)<<20)
		}
		cs[i].env0 = "FERRY_TOKEN=" + srv.token(ns, "write")
		if out, err := ferryRun(t, []string{cs[i].env0, "FERRY_FINGERPRINT=" + srv.fp}, "init", cs[i].dir, "--remote", srv.url(ns)); err != nil {
			t.Fatal(out)
		}
	}
	before := vmHWM(t, srv.cmd.Process.Pid)
	var wg sync.WaitGroup
	errs := make([]error, clients)
	outs := make([]string, clients)
	for i := range cs {
		// Fifty clients and a server under the race detector on two cores
		// can leave a connection unserved for seconds: the idle timeout is
		// not what this test measures.
		wg.Go(func() { outs[i], errs[i] = ferryRun(t, []string{"FERRY_IDLE_TIMEOUT=60s"}, "push", cs[i].dir) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v\n%s", i, err, outs[i])
		}
	}
	peak := vmHWM(t, srv.cmd.Process.Pid)
	ceiling := srv.info.Memory.Ceiling(clients)
	t.Logf("server peak RSS %d MiB before, %d MiB after %d clients x %d MB pushed at once; ceiling for %d connections %d MiB (%+v)",
		before>>20, peak>>20, clients, mb, clients, ceiling>>20, srv.info.Memory)
	if peak > ceiling {
		t.Errorf("server peak RSS %d MiB passed its ceiling of %d MiB", peak>>20, ceiling>>20)
	}
}
