package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/bench/linkem"
)

// WANConfig is the WAN matrix: every RTT × loss cell is a linkem link (two
// network namespaces and a relay in this process, so it needs no netem),
// and on each, ferry at every stream count and rsync over TCP copy the
// same workloads.
type WANConfig struct {
	Ferry string
	Work  string
	// RTTs and Losses (percent, each direction) span the matrix; Rate is
	// the link's bytes per second in each direction.
	RTTs   []time.Duration
	Losses []float64
	Rate   int64
	// Sweep is the ferry settings tried on the random file; the other
	// workloads use Default.
	Sweep []WANSetting
	// Default is the setting the targets are judged on (default: ferry's
	// own defaults, so what a user gets).
	Default WANSetting
	// Size of the random file (default 64 MiB: a lossy cell moves a few
	// Mbit/s over TCP, and the matrix has to finish in bounded time).
	Size int64
	// Tree is copied as the tree workload (default GOROOT/src, the Go
	// distribution's source); "-" leaves it out.
	Tree string
	// Cap bounds each transfer. A transfer still running at Cap is
	// stopped, and its throughput is what the link delivered towards the
	// receiver by then (IP bytes, so both tools pay their headers).
	Cap time.Duration
	Log func(string)
}

func (c *WANConfig) applyDefaults() {
	if c.RTTs == nil {
		c.RTTs = []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond}
	}
	if c.Losses == nil {
		c.Losses = []float64{0, 1, 5}
	}
	if c.Rate == 0 {
		c.Rate = 100e6 / 8
	}
	if c.Sweep == nil {
		c.Sweep = []WANSetting{{1, 1}, {4, 1}, {8, 1}, {16, 1}, {16, 8}, {16, 16}}
	}
	if c.Default == (WANSetting{}) {
		c.Default = DefaultSetting
	}
	if c.Size == 0 {
		c.Size = 64 << 20
	}
	if c.Tree == "" {
		c.Tree = filepath.Join(runtime.GOROOT(), "src")
	}
	if c.Cap == 0 {
		c.Cap = 45 * time.Second
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
}

// WANSetting is how ferry spreads a push: --streams over --connections.
type WANSetting struct{ Streams, Connections int }

func (s WANSetting) String() string {
	return fmt.Sprintf("%d streams on %d connection(s)", s.Streams, s.Connections)
}

func (s WANSetting) flags() []string {
	return []string{"--streams", strconv.Itoa(s.Streams), "--connections", strconv.Itoa(s.Connections)}
}

// ParseWANSettings reads STREAMSxCONNECTIONS,... (e.g. 8x1,16x8).
func ParseWANSettings(v string) ([]WANSetting, error) {
	var out []WANSetting
	for _, f := range strings.Split(v, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(f), "x")
		s, err1 := strconv.Atoi(a)
		n, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || s < 1 || n < 1 {
			return nil, fmt.Errorf("setting %q: want STREAMSxCONNECTIONS, e.g. 8x1", f)
		}
		out = append(out, WANSetting{s, n})
	}
	return out, nil
}

// DefaultSetting is ferry's --streams and --connections defaults.
var DefaultSetting = WANSetting{Streams: 8, Connections: 4}

// wanRun is one transfer over the link.
type wanRun struct {
	m      Measure
	sent   int64 // what the tool says it sent
	wire   int64 // IP bytes the link delivered towards the receiver
	capped bool
}

// throughput is payload bytes per second, or for a capped run the link's
// delivered bytes per second up to the cap.
func (r wanRun) throughput(payload int64, cap time.Duration) float64 {
	if r.capped {
		return float64(r.wire) / cap.Seconds()
	}
	return float64(payload) / r.m.Wall.Seconds()
}

// RunWAN runs the matrix. A machine that cannot make the link gets a
// report that says so, not figures.
func RunWAN(ctx context.Context, c WANConfig) (*Report, error) {
	c.applyDefaults()
	rep := &Report{Title: fmt.Sprintf("ferry vs rsync over an emulated WAN (%s each way, linkem)", rateName(c.Rate)),
		Date: time.Now(), Machine: Machine(), Tools: map[string]string{}}
	cleanup, err := scratch(&c.Work, "ferry-bench-wan-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	EnsurePeers(ctx, c.Log)
	rep.Tools["ferry"] = version(ctx, c.Ferry)
	rep.Tools["rsync"] = version(ctx, "rsync", "--version")

	big := filepath.Join(c.Work, "big")
	if err := writeRandom(filepath.Join(big, "large.bin"), 21, c.Size); err != nil {
		return nil, err
	}
	var tree string
	var treeBytes int64
	if c.Tree != "-" {
		tree = filepath.Join(c.Work, "tree")
		if err := copyTree(c.Tree, tree); err != nil {
			return nil, fmt.Errorf("copying the tree workload: %w", err)
		}
		var err error
		if treeBytes, err = dirBytes(tree); err != nil {
			return nil, err
		}
	}
	for _, rtt := range c.RTTs {
		for _, loss := range c.Losses {
			if err := c.cell(ctx, rep, rtt, loss, big, tree, treeBytes); err != nil {
				if errors.Is(err, linkem.ErrUnsupported) {
					rep.Rows = append(rep.Rows, Row{Workload: "WAN", Step: "all", Tool: "all", Note: "not measured: " + err.Error()})
					return rep, nil
				}
				return nil, err
			}
		}
	}
	return rep, nil
}

func rateName(r int64) string { return fmt.Sprintf("%g Mbit/s", float64(r)*8/1e6) }

// cell measures one RTT and loss on a fresh link, server and daemon.
func (c *WANConfig) cell(ctx context.Context, rep *Report, rtt time.Duration, loss float64, big, tree string, treeBytes int64) error {
	name := fmt.Sprintf("%v RTT, %g%% loss", rtt, loss)
	c.Log("WAN cell " + name)
	shape := linkem.Shape{Delay: rtt / 2, Loss: loss / 100, Rate: c.Rate}
	l, err := linkem.New(linkem.Config{AtoB: shape, BtoA: shape, Seed: 7})
	if err != nil {
		return err
	}
	defer l.Close()
	n := Net{Client: []string{"ip", "netns", "exec", l.Namespace(linkem.A)},
		Server: []string{"ip", "netns", "exec", l.Namespace(linkem.B)}, Host: linkem.AddrB.String()}
	work := filepath.Join(c.Work, strings.NewReplacer(" ", "", ",", "-", "%", "").Replace(name))
	os.MkdirAll(work, 0o755)
	defer os.RemoveAll(work)
	fp, err := NewFerryPeer(ctx, c.Ferry, filepath.Join(work, "ferry"), n)
	if err != nil {
		return err
	}
	defer fp.Close()
	ferry := fp.(*ferryPeer)
	os.MkdirAll(filepath.Join(work, "rsync"), 0o755)
	rs, err := NewRsyncPeer(ctx, filepath.Join(work, "rsync"), n)
	if err != nil {
		return err
	}
	defer rs.Close()

	run := func(p Peer, src string) (wanRun, error) {
		before := l.Stats(linkem.A).DeliveredBytes
		tctx, cancel := context.WithTimeout(ctx, c.Cap)
		defer cancel()
		m, sent, err := p.Send(tctx, src)
		r := wanRun{m: m, sent: sent, wire: l.Stats(linkem.A).DeliveredBytes - before}
		if err != nil && tctx.Err() != nil && ctx.Err() == nil {
			r.capped, r.m.Wall, err = true, c.Cap, nil
		}
		return r, err
	}
	row := func(workload, step, tool string, r wanRun, payload int64) {
		note := fmt.Sprintf("%.1f Mbit/s", r.throughput(payload, c.Cap)*8/1e6)
		switch {
		case payload == 0:
			note = "" // an incremental push: its wall time is the figure
		case r.capped:
			note = fmt.Sprintf("stopped at %v: %.1f Mbit/s delivered by then", c.Cap, r.throughput(payload, c.Cap)*8/1e6)
		}
		rep.Rows = append(rep.Rows, Row{Workload: name, Step: workload + ", " + step, Tool: tool, Median: r.m, Runs: 1, Bytes: r.wire, Note: note})
	}
	ratio := func(workload, cc string, f, r wanRun, payload int64) {
		v := f.throughput(payload, c.Cap) / r.throughput(payload, c.Cap)
		what := fmt.Sprintf("%s, %s: ferry (%v) / rsync (%s) throughput", name, workload, c.Default, cc)
		if f.capped || r.capped {
			what += " (a capped run: link bytes by the cap)"
		}
		rep.Ratios = append(rep.Ratios, Ratio{What: what, Value: v, Target: wanTarget(rtt, loss)})
	}

	// rsyncEach copies src with rsync under each TCP congestion
	// controller the kernel has of cubic (Linux's default) and bbr (the
	// sender's is what counts), each against ferry's run f, and returns
	// the last run.
	ccs := c.tcpControllers()
	rsyncEach := func(workload, src string, payload int64, f wanRun) (last wanRun, err error) {
		for _, cc := range ccs {
			if err := setTCPController(ctx, l, cc); err != nil {
				return last, err
			}
			if err := rs.Fresh(ctx); err != nil {
				return last, err
			}
			if last, err = run(rs, src); err != nil {
				return last, fmt.Errorf("%s: rsync, %s (%s): %w", name, workload, cc, err)
			}
			row(workload, "initial", "rsync ("+cc+")", last, payload)
			if f.m.Wall > 0 {
				ratio(workload+", initial", cc, f, last, payload)
			}
		}
		return last, nil
	}

	bigName := fmt.Sprintf("one %s random file", Human(c.Size))
	var fDefault, fLast wanRun // the default is the sweep's last
	sweep := c.Sweep
	if !slices.Contains(sweep, c.Default) {
		sweep = append(sweep, c.Default)
	}
	// The default goes last, so the insert is pushed with it.
	sweep = append(slices.DeleteFunc(slices.Clone(sweep), func(s WANSetting) bool { return s == c.Default }), c.Default)
	for _, s := range sweep {
		ferry.flags = s.flags()
		if err := ferry.Fresh(ctx); err != nil {
			return err
		}
		r, err := run(ferry, big)
		if err != nil {
			return fmt.Errorf("%s: ferry push, %v: %w", name, s, err)
		}
		row(bigName, "initial, "+s.String(), "ferry", r, c.Size)
		fDefault, fLast = r, r
	}
	rr, err := rsyncEach(bigName, big, c.Size, fDefault)
	if err != nil {
		return err
	}

	// The 100-byte insert goes to the copies the last runs made; a copy
	// that was stopped at the cap has nothing to be incremental to.
	if err := insertMiddle(filepath.Join(big, "large.bin"), 100); err != nil {
		return err
	}
	if !fLast.capped && !rr.capped {
		fi, err := run(ferry, big)
		if err != nil {
			return fmt.Errorf("%s: ferry insert: %w", name, err)
		}
		ri, err := run(rs, big)
		if err != nil {
			return fmt.Errorf("%s: rsync insert: %w", name, err)
		}
		row(bigName, "push after a 100-byte insert", "ferry", fi, 0)
		row(bigName, "push after a 100-byte insert", "rsync ("+ccs[len(ccs)-1]+")", ri, 0)
		rep.Ratios = append(rep.Ratios, Ratio{What: name + ", 100-byte insert: ferry / rsync wall time", Value: fi.m.Wall.Seconds() / ri.m.Wall.Seconds()})
	} else {
		rep.Rows = append(rep.Rows, Row{Workload: name, Step: bigName + ", push after a 100-byte insert", Tool: "all",
			Note: "not measured: an initial copy was stopped at the cap"})
	}
	// Rewrite the file as it was, so every cell moves the same bytes.
	if err := writeRandom(filepath.Join(big, "large.bin"), 21, c.Size); err != nil {
		return err
	}

	if tree == "" {
		return nil
	}
	treeName := fmt.Sprintf("tree %s (%s)", filepath.Base(c.Tree), Human(treeBytes))
	if c.Tree == filepath.Join(runtime.GOROOT(), "src") {
		treeName = fmt.Sprintf("Go source tree (%s)", Human(treeBytes))
	}
	ferry.flags = c.Default.flags()
	if err := ferry.Fresh(ctx); err != nil {
		return err
	}
	ft, err := run(ferry, tree)
	if err != nil {
		return fmt.Errorf("%s: ferry tree: %w", name, err)
	}
	row(treeName, "initial", "ferry", ft, treeBytes)
	_, err = rsyncEach(treeName, tree, treeBytes, ft)
	return err
}

// tcpControllers are the ones rsync is measured under: cubic and bbr,
// those of them the kernel offers.
func (c *WANConfig) tcpControllers() []string {
	b, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	var out []string
	for _, cc := range []string{"cubic", "bbr"} {
		if slices.Contains(strings.Fields(string(b)), cc) {
			out = append(out, cc)
		}
	}
	if len(out) == 0 {
		out = []string{"default"}
	}
	return out
}

// setTCPController sets the congestion controller of the client side's
// route to the server. A namespace's own default cannot be set to one
// the host does not allow (tcp_allowed_congestion_control), a route's can.
func setTCPController(ctx context.Context, l *linkem.Link, cc string) error {
	if cc == "default" {
		return nil
	}
	cmd := exec.CommandContext(ctx, "ip", "-n", l.Namespace(linkem.A), "route", "replace", linkem.AddrB.String(),
		"dev", "tun0", "src", linkem.AddrA.String(), "congctl", cc)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("setting TCP congestion control %s: %v: %s", cc, err, out)
	}
	return nil
}

// wanTarget is what the performance issue asks of a cell.
func wanTarget(rtt time.Duration, loss float64) string {
	switch {
	case rtt == 50*time.Millisecond && loss == 1:
		return ">= 1.5"
	case rtt == 200*time.Millisecond && loss == 0:
		return ">= 2"
	}
	return ""
}
