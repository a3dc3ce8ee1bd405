package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/internal/pgtest"
	"github.com/ferry-sync/ferry/internal/s3test"
)

// BenchmarkClusterPush: the aggregate throughput of 6 clients pushing at
// once (16 MiB of new random data each, in 8 files), spread over 1, 2 and
// 3 servers of a cluster (versitygw and PostgreSQL on this machine), and
// through one standalone server (Pebble and local packs) in the same run
// as the peer. On 2 cores every server, the database, the object store and
// the clients share the CPU, so the figure is CPU-bound: it measures the
// cost of the cluster's layout, not the scaling of real machines. Reports
// MB/s and CPU-seconds per GB over every process.
//
//	go test ./cmd/ferry -run XXX -bench ClusterPush -benchtime 3x
func BenchmarkClusterPush(b *testing.B) {
	const clients, perClient = 6, 16 << 20
	pg := pgtest.Start(b)
	s3 := s3test.Start(b, "packs")
	for _, layout := range []struct {
		name    string
		servers int
		cluster bool
	}{{"standalone", 1, false}, {"cluster-1", 1, true}, {"cluster-2", 2, true}, {"cluster-3", 3, true}} {
		b.Run(layout.name, func(b *testing.B) {
			var args []string
			env := s3.Env()
			if layout.cluster {
				args = []string{"--store", "s3://packs/bench-" + layout.name + "?endpoint=" + s3.Endpoint + "&region=" + s3test.Region,
					"--meta", pg.NewDB(b), "--pack-cache", "0"}
			}
			var servers []*serverProc
			for i := range layout.servers {
				p, err := launchServe(filepath.Join(b.TempDir(), fmt.Sprint("data", i)), "127.0.0.1:0", env, nil, args...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(p.kill)
				servers = append(servers, p)
			}
			tok, err := ferryCmd(nil, "token", "create", "--data", servers[0].data, "--namespace", "bench", "--perm", "write").Output()
			if err != nil {
				b.Fatal(err)
			}
			token := strings.TrimSpace(strings.SplitN(string(tok), "\n", 2)[0])
			cenv := []string{"FERRY_TOKEN=" + token, "FERRY_FINGERPRINT=" + servers[0].fp}
			dirs := make([]string, clients)
			for c := range dirs {
				dirs[c] = filepath.Join(b.TempDir(), fmt.Sprint("c", c))
				s := servers[c%len(servers)]
				if out, err := ferryCmd(cenv, "init", dirs[c], "--remote", s.url("bench"), "--root", fmt.Sprint("r", c), "--new-root").CombinedOutput(); err != nil {
					b.Fatalf("init: %v\n%s", err, out)
				}
			}
			var elapsed time.Duration
			var cpu float64
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				buf := make([]byte, perClient/8)
				for _, d := range dirs {
					for f := range 8 {
						rand.Read(buf)
						if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d-%d.bin", i, f)), buf, 0o644); err != nil {
							b.Fatal(err)
						}
					}
				}
				before := cpuOf(servers) + childCPU()
				b.StartTimer()
				t0 := time.Now()
				var wg sync.WaitGroup
				errs := make([]error, clients)
				for c, d := range dirs {
					wg.Go(func() {
						if out, err := ferryCmd(cenv, "push", d).CombinedOutput(); err != nil {
							errs[c] = fmt.Errorf("push: %v\n%s", err, out)
						}
					})
				}
				wg.Wait()
				elapsed += time.Since(t0)
				b.StopTimer()
				cpu += cpuOf(servers) + childCPU() - before
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			gb := float64(clients*perClient*b.N) / 1e9
			b.ReportMetric(gb*1e3/elapsed.Seconds(), "MB/s")
			b.ReportMetric(cpu/gb, "cpu-s/GB")
		})
	}
}

// cpuOf is the CPU seconds the server processes used so far.
func cpuOf(servers []*serverProc) float64 {
	var total float64
	for _, s := range servers {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		var ut, st float64
		fmt.Sscan(f[11], &ut)
		fmt.Sscan(f[12], &st)
		total += (ut + st) / 100 // USER_HZ
	}
	return total
}

// childCPU is the CPU seconds of this process's waited-for children (the
// clients), so that a round counts every process it ran.
func childCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
