// Command linkem runs programs across an emulated wide-area link (see
// package bench/linkem): a server on side B, a client on side A, with
// delay, jitter, loss, duplication, reordering, a rate limit, an MTU, a
// blackhole and a NAT rebinding, each direction on its own.
//
//	linkem --both 'delay=25ms,loss=1%,rate=100mbit' \
//	    -b 'ferry serve --data /tmp/srv --listen 10.77.0.2:7443' \
//	    -a 'ferry push /tmp/folder'
//
// Side A is 10.77.0.1 and side B 10.77.0.2. The B command starts first
// and is stopped when the A command ends; linkem exits with A's status and
// prints what the link did. With --hold and no -a it keeps the link until
// interrupted, for commands run by hand with ip netns exec.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferry-sync/ferry/bench/linkem"
)

func main() { os.Exit(run()) }

func run() int {
	var (
		both, ab, ba          string
		cmdA, cmdB            string
		mtu                   int
		seed                  uint64
		blackholeAt, blackFor time.Duration
		rebindAt              time.Duration
		hold, asJSON          bool
	)
	flag.StringVar(&both, "both", "", "shape of both directions (delay=25ms,loss=1%,rate=100mbit,...)")
	flag.StringVar(&ab, "ab", "", "shape of A to B (overrides --both)")
	flag.StringVar(&ba, "ba", "", "shape of B to A (overrides --both)")
	flag.StringVar(&cmdA, "a", "", "command to run on side A (10.77.0.1), through sh -c")
	flag.StringVar(&cmdB, "b", "", "command to run on side B (10.77.0.2) first, in the background")
	flag.IntVar(&mtu, "mtu", 1500, "MTU of both devices")
	flag.Uint64Var(&seed, "seed", uint64(time.Now().UnixNano()), "seed of the random choices")
	flag.DurationVar(&blackholeAt, "blackhole-at", 0, "drop everything from this long after A starts")
	flag.DurationVar(&blackFor, "blackhole-for", 10*time.Second, "for this long")
	flag.DurationVar(&rebindAt, "rebind-at", 0, "rebind the NAT this long after A starts")
	flag.BoolVar(&hold, "hold", false, "keep the link until interrupted")
	flag.BoolVar(&asJSON, "json", false, "print the link's counts as JSON")
	flag.Parse()
	shape := func(spec string) linkem.Shape {
		s, err := linkem.ParseShape(spec)
		if err != nil {
			fmt.Fprintln(os.Stderr, "linkem:", err)
			os.Exit(2)
		}
		return s
	}
	cfg := linkem.Config{AtoB: shape(both), BtoA: shape(both), MTU: mtu, Seed: seed}
	if ab != "" {
		cfg.AtoB = shape(ab)
	}
	if ba != "" {
		cfg.BtoA = shape(ba)
	}
	if cmdA == "" && !hold {
		fmt.Fprintln(os.Stderr, "linkem: give -a COMMAND, or --hold")
		return 2
	}
	l, err := linkem.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "linkem:", err)
		return 1
	}
	defer l.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "linkem: A %s in %s, B %s in %s; A to B %q, B to A %q, seed %d\n",
		linkem.AddrA, l.Namespace(linkem.A), linkem.AddrB, l.Namespace(linkem.B), cfg.AtoB, cfg.BtoA, seed)
	if cmdB != "" {
		b := l.Command(linkem.B, "sh", "-c", cmdB)
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "linkem: -b:", err)
			return 1
		}
		defer func() { b.Process.Signal(syscall.SIGTERM); b.Wait() }()
	}
	code := 0
	if cmdA != "" {
		if blackholeAt > 0 {
			t := time.AfterFunc(blackholeAt, func() { l.Blackhole(blackFor) })
			defer t.Stop()
		}
		if rebindAt > 0 {
			t := time.AfterFunc(rebindAt, l.Rebind)
			defer t.Stop()
		}
		a := l.Command(linkem.A, "sh", "-c", cmdA)
		a.Stdin, a.Stdout, a.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := a.Run(); err != nil {
			code = 1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
		}
	} else {
		<-ctx.Done()
	}
	stats := map[string]linkem.Stats{"a_to_b": l.Stats(linkem.A), "b_to_a": l.Stats(linkem.B)}
	if asJSON {
		b, _ := json.Marshal(stats)
		fmt.Println(string(b))
	} else {
		fmt.Fprintf(os.Stderr, "linkem: A to B %+v\nlinkem: B to A %+v\n", stats["a_to_b"], stats["b_to_a"])
	}
	return code
}
