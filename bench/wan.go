package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// WANConfig shapes the emulated link: two network namespaces made by the
// harness, joined by a veth pair, with tc netem on both ends.
type WANConfig struct {
	Ferry string
	Work  string
	// RTT, Loss (percent, on the client-to-server direction, which carries
	// a push's data) and Rate (e.g. "100mbit") of the link.
	RTT  time.Duration
	Loss float64
	Rate string
	// Size of the random file pushed (default 32 MiB: at 1% loss a single
	// TCP flow moves a few Mbit/s).
	Size int64
	Runs int
	Log  func(string)
}

func (c *WANConfig) applyDefaults() {
	if c.RTT == 0 {
		c.RTT = 50 * time.Millisecond
	}
	if c.Loss == 0 {
		c.Loss = 1
	}
	if c.Rate == "" {
		c.Rate = "100mbit"
	}
	if c.Size == 0 {
		c.Size = 32 << 20
	}
	if c.Runs == 0 {
		c.Runs = 3
	}
	if c.Log == nil {
		c.Log = func(string) {}
	}
}

const (
	wanServerNS = "ferrybench-srv"
	wanClientNS = "ferrybench-cli"
	wanServerIP = "10.99.0.1"
	wanClientIP = "10.99.0.2"
)

// ErrNoNetns says the machine cannot make network namespaces (no root, or
// no iproute2): the WAN step is skipped, not faked.
var ErrNoNetns = errors.New("cannot create network namespaces here (needs root and iproute2)")

func ipRun(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// SetupWAN makes the namespaces, the link and its impairment, and returns
// the Net to run peers on and a function that removes it all.
func SetupWAN(ctx context.Context, c WANConfig) (Net, func(), error) {
	c.applyDefaults()
	if os.Geteuid() != 0 {
		return Net{}, nil, ErrNoNetns
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return Net{}, nil, ErrNoNetns
	}
	cleanup := func() {
		exec.Command("ip", "netns", "del", wanServerNS).Run()
		exec.Command("ip", "netns", "del", wanClientNS).Run()
	}
	cleanup() // leftovers of a killed run
	half := fmt.Sprintf("%dms", c.RTT.Milliseconds()/2)
	steps := [][]string{
		{"ip", "netns", "add", wanServerNS},
		{"ip", "netns", "add", wanClientNS},
		{"ip", "link", "add", "fbv-s", "type", "veth", "peer", "name", "fbv-c"},
		{"ip", "link", "set", "fbv-s", "netns", wanServerNS},
		{"ip", "link", "set", "fbv-c", "netns", wanClientNS},
		{"ip", "-n", wanServerNS, "addr", "add", wanServerIP + "/24", "dev", "fbv-s"},
		{"ip", "-n", wanClientNS, "addr", "add", wanClientIP + "/24", "dev", "fbv-c"},
		{"ip", "-n", wanServerNS, "link", "set", "fbv-s", "up"},
		{"ip", "-n", wanClientNS, "link", "set", "fbv-c", "up"},
		{"ip", "-n", wanServerNS, "link", "set", "lo", "up"},
		{"ip", "-n", wanClientNS, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", wanClientNS, "tc", "qdisc", "add", "dev", "fbv-c", "root", "netem",
			"delay", half, "loss", fmt.Sprintf("%g%%", c.Loss), "rate", c.Rate, "limit", "100000"},
		{"ip", "netns", "exec", wanServerNS, "tc", "qdisc", "add", "dev", "fbv-s", "root", "netem",
			"delay", half, "rate", c.Rate, "limit", "100000"},
	}
	for _, s := range steps {
		if err := ipRun(ctx, s...); err != nil {
			cleanup()
			return Net{}, nil, fmt.Errorf("%w: %v", ErrNoNetns, err)
		}
	}
	n := Net{
		Client: []string{"ip", "netns", "exec", wanClientNS},
		Server: []string{"ip", "netns", "exec", wanServerNS},
		Host:   wanServerIP,
	}
	return n, cleanup, nil
}

// RunWAN compares ferry and rsync over the emulated link, on one random
// file: throughput of the initial copy.
func RunWAN(ctx context.Context, c WANConfig) (*Report, error) {
	c.applyDefaults()
	rep := &Report{Title: fmt.Sprintf("ferry vs rsync over an emulated WAN (%v RTT, %g%% loss, %s)", c.RTT, c.Loss, c.Rate), Date: time.Now(), Machine: Machine(), Tools: map[string]string{}}
	n, cleanup, err := SetupWAN(ctx, c)
	if err != nil {
		rep.Rows = append(rep.Rows, Row{Workload: "WAN", Step: "all", Tool: "all", Note: "skipped: " + err.Error()})
		return rep, nil
	}
	defer cleanup()
	cmp := CompareConfig{Ferry: c.Ferry, Work: c.Work, Net: n, Runs: c.Runs, Log: c.Log,
		Corpora: []Corpus{LargeFile(c.Size, false)}, Title: rep.Title}
	// Only ferry and rsync cross the link; restic writes a local repository.
	r, err := runPeers(ctx, cmp, []string{"ferry", "rsync"}, []string{"initial"})
	if err != nil {
		return nil, err
	}
	r.Title = rep.Title
	for i := range r.Ratios {
		r.Ratios[i].What = strings.Replace(r.Ratios[i].What, "wall time", "wall time (throughput: the inverse)", 1)
		r.Ratios[i].Target = "<= 0.67 (1.5x rsync's throughput)"
	}
	return r, nil
}
