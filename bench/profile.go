package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
	"github.com/ferry-sync/ferry/transport"
)

// ProfileConfig is the CPU breakdown: a push and a pull of one random file
// through a real server on 127.0.0.1 with both sides profiled, and each
// component's floor measured alone in this process.
type ProfileConfig struct {
	Ferry string
	Work  string
	Size  int64 // default 1 GiB
	Log   func(string)
}

// Categories a profile's CPU is split into. A sample counts for the first
// of them any frame of its stack matches, so a write syscall under an
// fsync is fsync, and AES under quic-go is crypto.
var categories = []struct {
	name string
	re   *regexp.Regexp
}{
	{"fsync", regexp.MustCompile(`^os\.\(\*File\)\.Sync$|^syscall\.Fsync$|^golang\.org/x/sys/unix\.(Fsync|Fdatasync|SyncFileRange)$`)},
	{"crypto (TLS, AES-GCM)", regexp.MustCompile(`^crypto/|^golang\.org/x/crypto/|^vendor/golang\.org/x/crypto/`)},
	{"hashing (BLAKE3)", regexp.MustCompile(`^github\.com/zeebo/blake3`)},
	{"compression (zstd)", regexp.MustCompile(`^github\.com/klauspost/compress`)},
	{"chunking", regexp.MustCompile(`^github\.com/restic/chunker|^github\.com/ferry-sync/ferry/chunk\.`)},
	{"store (Pebble, packs)", regexp.MustCompile(`^github\.com/cockroachdb/|^github\.com/ferry-sync/ferry/cas\.`)},
	{"QUIC (quic-go, its syscalls)", regexp.MustCompile(`^github\.com/quic-go/`)},
	{"file I/O (scan, restore)", regexp.MustCompile(`^github\.com/ferry-sync/ferry/(scan|restore)\.`)},
	{"GC and runtime", regexp.MustCompile(`^runtime\.`)},
}

const otherCategory = "other"

// Breakdown splits a CPU profile by category with `go tool pprof
// -traces` (the go command is what builds ferry, so a bench machine has
// it).
func Breakdown(ctx context.Context, bin, profile string) (map[string]time.Duration, time.Duration, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", bin, profile).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return nil, 0, fmt.Errorf("go tool pprof %s: %w", profile, err)
	}
	return parseTraces(out)
}

// parseTraces reads pprof's -traces output: blocks split by dashed lines,
// the first line of each with the sample's value, then its frames.
func parseTraces(out []byte) (map[string]time.Duration, time.Duration, error) {
	by := map[string]time.Duration{}
	var total time.Duration
	var value time.Duration
	cat := ""
	flush := func() {
		if value > 0 {
			if cat == "" {
				cat = otherCategory
			}
			by[cat] += value
			total += value
		}
		value, cat = 0, ""
	}
	prio := func(name string) int {
		for i, c := range categories {
			if c.name == name {
				return i
			}
		}
		return len(categories)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "-----------+") {
			flush()
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(line, " ") {
			continue // the header
		}
		fn := fields[len(fields)-1]
		if len(fields) >= 2 && value == 0 {
			d, err := time.ParseDuration(fields[0])
			if err != nil {
				continue
			}
			value = d
		}
		for i, c := range categories {
			if c.re.MatchString(fn) && (cat == "" || i < prio(cat)) {
				cat = c.name
				break
			}
		}
	}
	flush()
	return by, total, sc.Err()
}

// selfCPU is this process's user+system time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floor measures fn's wall and CPU time in this process.
func floor(fn func() error) (Measure, error) {
	c0, t0 := selfCPU(), time.Now()
	if err := fn(); err != nil {
		return Measure{}, err
	}
	return Measure{Wall: time.Since(t0), CPU: selfCPU() - c0}, nil
}

// RunProfile measures the floor of each component, then profiles a push
// and a pull of c.Size random bytes through a real server, client and
// server apart.
func RunProfile(ctx context.Context, c ProfileConfig) (*Report, error) {
	if c.Size == 0 {
		c.Size = 1 << 30
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
	cleanup, err := scratch(&c.Work, "ferry-bench-profile-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	rep := &Report{Title: fmt.Sprintf("Where the CPU goes: one %s random file through ferry serve on 127.0.0.1", Human(c.Size)),
		Date: time.Now(), Machine: Machine(), Tools: map[string]string{"ferry": version(ctx, c.Ferry)}}
	gb := float64(c.Size) / 1e9

	// The floor: each component alone, over bytes in memory.
	c.Log("floors")
	buf := make([]byte, 64<<20)
	rng := rand.NewChaCha8([32]byte{5})
	rng.Read(buf)
	rounds := int(max(1, c.Size/int64(len(buf))))
	n := int64(rounds) * int64(len(buf))
	addFloor := func(what, note string, m Measure, n int64) {
		rep.Rows = append(rep.Rows, Row{Workload: "floor", Step: what, Tool: "alone", Median: m, Runs: 1, Size: n,
			Note: strings.TrimSpace(fmt.Sprintf("%.2f CPU-s/GB. %s", m.CPU.Seconds()/(float64(n)/1e9), note))})
	}
	p := chunk.Default()
	v, err := floor(func() error {
		for range rounds {
			if err := chunk.ParallelCuts(ctx, bytes.NewReader(buf), int64(len(buf)), p, chunk.ParallelOptions{Workers: 1}, func(off, n int64) error { return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	addFloor("chunking (restic/chunker cuts, one core)", "", v, n)
	v, _ = floor(func() error {
		for range rounds {
			for off := 0; off < len(buf); off += 1 << 20 {
				cas.Sum(buf[off : off+1<<20])
			}
		}
		return nil
	})
	addFloor("hashing (BLAKE3, 1 MiB blobs)", "Once at the client; the server verifies every frame once more.", v, n)
	v, _ = floor(func() error {
		dst := make([]byte, 0, 1<<20)
		for range rounds {
			for off := 0; off < len(buf); off += 1 << 20 {
				cas.Encode(dst, buf[off:off+1<<20])
			}
		}
		return nil
	})
	addFloor("compression (zstd's incompressible test)", "Random bytes: the sample says incompressible and zstd is skipped.", v, n)
	certDir := filepath.Join(c.Work, "cert")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	cert, _, err := transport.LoadOrCreateCert(certDir)
	if err != nil {
		return nil, err
	}
	v, err = floor(func() error { _, err := transport.LoopbackCopy(ctx, cert, c.Size, 8); return err })
	if err != nil {
		return nil, err
	}
	addFloor("QUIC raw copy, 8 streams (both ends)", fmt.Sprintf("About %.2f per side.", v.CPU.Seconds()/(float64(c.Size)/1e9)/2), v, c.Size)
	v, err = floor(func() error {
		f, err := os.Create(filepath.Join(c.Work, "write.bin"))
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		for range rounds {
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		return nil, err
	}
	addFloor("file write and fsync", "The store's pack writes, and a restore's.", v, n)

	// The real thing, profiled.
	src := filepath.Join(c.Work, "src")
	c.Log("writing the file")
	if err := writeRandom(filepath.Join(src, "big.bin"), 31, c.Size); err != nil {
		return nil, err
	}
	data := filepath.Join(c.Work, "data")
	start := func(prof string) (*Server, error) {
		cmd := exec.CommandContext(ctx, c.Ferry, "--json", "-q", "serve", "--data", data, "--listen", "127.0.0.1:0")
		cmd.Env = []string{"FERRY_CPUPROFILE=" + prof}
		return startServer(cmd, data)
	}
	type phase struct {
		name                string
		client, server, dir string
	}
	var phases []phase
	for _, ph := range []string{"push", "pull"} {
		c.Log("profiled " + ph)
		cp, sp := filepath.Join(c.Work, ph+"-client.prof"), filepath.Join(c.Work, ph+"-server.prof")
		srv, err := start(sp)
		if err != nil {
			return nil, err
		}
		dir := src
		env := []string{"FERRY_CPUPROFILE=" + cp}
		var m Measure
		if ph == "push" {
			tok, err := srv.Token(ctx, c.Ferry, "p", "write")
			if err != nil {
				srv.Stop()
				return nil, err
			}
			if _, err := Exec(ctx, []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.Fingerprint}, c.Ferry, "init", src, "--remote", srv.URL("p"), "--root", "r"); err != nil {
				srv.Stop()
				return nil, err
			}
			cpu0 := procCPU(srv.Pid())
			m, err = Exec(ctx, env, c.Ferry, "-q", "push", src)
			m.ServerCPU = procCPU(srv.Pid()) - cpu0
		} else {
			dir = filepath.Join(c.Work, "dst")
			tok, err := srv.Token(ctx, c.Ferry, "p", "write")
			if err == nil {
				_, err = Exec(ctx, []string{"FERRY_TOKEN=" + tok, "FERRY_FINGERPRINT=" + srv.Fingerprint}, c.Ferry, "init", dir, "--remote", srv.URL("p"), "--root", "r")
			}
			if err != nil {
				srv.Stop()
				return nil, err
			}
			cpu0 := procCPU(srv.Pid())
			m, err = Exec(ctx, env, c.Ferry, "-q", "pull", dir)
			m.ServerCPU = procCPU(srv.Pid()) - cpu0
		}
		serr := srv.Stop()
		if err != nil {
			return nil, fmt.Errorf("profiled %s: %w", ph, err)
		}
		if serr != nil {
			return nil, fmt.Errorf("server of the profiled %s: %w", ph, serr)
		}
		rep.Rows = append(rep.Rows, Row{Workload: "one " + Human(c.Size) + " random file", Step: ph, Tool: "ferry", Median: m, Runs: 1, Size: c.Size,
			Note: fmt.Sprintf("%.0f MB/s", float64(c.Size)/m.Wall.Seconds()/1e6)})
		phases = append(phases, phase{ph, cp, sp, dir})
	}
	for _, ph := range phases {
		for _, side := range []struct{ name, prof string }{{"client", ph.client}, {"server", ph.server}} {
			by, total, err := Breakdown(ctx, c.Ferry, side.prof)
			if err != nil {
				rep.Rows = append(rep.Rows, Row{Workload: ph.name + ", " + side.name, Step: "breakdown", Tool: "pprof", Note: "not measured: " + err.Error()})
				continue
			}
			names := []string{}
			for _, cat := range categories {
				names = append(names, cat.name)
			}
			names = append(names, otherCategory)
			var parts []string
			for _, name := range names {
				if d := by[name]; d > 0 {
					parts = append(parts, fmt.Sprintf("%s %.2f", name, d.Seconds()/gb))
				}
			}
			rep.Rows = append(rep.Rows, Row{Workload: ph.name + ", " + side.name, Step: "breakdown (CPU-s/GB)", Tool: "pprof",
				Median: Measure{CPU: total}, Runs: 1, Note: fmt.Sprintf("total %.2f: %s", total.Seconds()/gb, strings.Join(parts, "; "))})
		}
	}
	os.RemoveAll(filepath.Join(c.Work, "dst"))
	return rep, nil
}
