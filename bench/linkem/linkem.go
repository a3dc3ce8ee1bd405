// Package linkem emulates a wide-area link in user space, for machines
// whose kernel has no netem: two network namespaces, A and B, each with a
// TUN device, and a relay in this process that carries IP packets between
// the two devices, delaying, dropping, duplicating, reordering and rate
// limiting them, each direction on its own, and rewriting source ports to
// act as a NAT that rebinds. Because it works below TCP and UDP, rsync
// over TCP and ferry over QUIC cross exactly the same link.
//
// It needs root (network namespaces, /dev/net/tun) and iproute2's ip.
// Programs run on a side with Command, or make sockets there with Do.
package linkem

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Side names one end of the link.
type Side int

const (
	A Side = iota // conventionally the client
	B             // and the server
)

func (s Side) String() string { return [...]string{"A", "B"}[s] }

// Addresses of the two ends, each in its own namespace.
var (
	AddrA = netip.MustParseAddr("10.77.0.1")
	AddrB = netip.MustParseAddr("10.77.0.2")
)

// Config is a link: what each direction does, the devices' MTU, and the
// seed of the random choices (loss, jitter), so a run can be repeated.
type Config struct {
	AtoB, BtoA Shape
	MTU        int // default 1500
	Seed       uint64
}

// Link is a running link. Close removes its namespaces.
type Link struct {
	ns   [2]string // namespace names
	tun  [2]*os.File
	pipe [2]*pipe // pipe[A] carries A to B
	done chan struct{}
	wg   sync.WaitGroup
	nat  nat
}

// ErrUnsupported says this machine cannot make the link (not root, no
// ip, no /dev/net/tun).
var ErrUnsupported = errors.New("linkem: needs root, iproute2 (ip) and /dev/net/tun")

var linkSeq atomic.Int64

// New makes the namespaces and devices and starts the relay.
func New(cfg Config) (l *Link, err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not running as root", ErrUnsupported)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	n := linkSeq.Add(1)
	l = &Link{done: make(chan struct{})}
	for i, side := range []Side{A, B} {
		l.ns[i] = fmt.Sprintf("linkem-%d-%d-%s", os.Getpid(), n, side)
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	for i, side := range []Side{A, B} {
		if err := ip("netns", "add", l.ns[i]); err != nil {
			return nil, err
		}
		if err := ip("-n", l.ns[i], "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
		if l.tun[i], err = l.openTun(side); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
		}
		local, peer := AddrA, AddrB
		if side == B {
			local, peer = AddrB, AddrA
		}
		if err := ip("-n", l.ns[i], "addr", "add", local.String(), "peer", peer.String(), "dev", "tun0"); err != nil {
			return nil, err
		}
		// A long device queue: the emulated queue (Shape.Queue) is the
		// bottleneck's, not the kernel's 500 packets.
		if err := ip("-n", l.ns[i], "link", "set", "dev", "tun0", "mtu", fmt.Sprint(cfg.MTU), "txqueuelen", "10000", "up"); err != nil {
			return nil, err
		}
	}
	l.pipe[A] = newPipe(cfg.AtoB, cfg.Seed)
	l.pipe[B] = newPipe(cfg.BtoA, cfg.Seed+1)
	l.nat.init()
	for _, from := range []Side{A, B} {
		to := 1 - from
		l.wg.Go(func() { l.pipe[from].run(func(b []byte) error { _, err := l.tun[to].Write(b); return err }, l.done) })
		l.wg.Go(func() { l.read(from) })
	}
	return l, nil
}

// read carries packets from side's device into its pipe.
func (l *Link) read(from Side) {
	buf := make([]byte, 65536)
	p := l.pipe[from]
	for {
		n, err := l.tun[from].Read(buf)
		if err != nil {
			return // closed
		}
		if n == 0 || buf[0]>>4 != 4 {
			// The link carries IPv4 only (the kernel's own IPv6 chatter,
			// router solicitations, would blur the counts).
			p.c.notIPv4.Add(1)
			continue
		}
		b := append([]byte(nil), buf[:n]...)
		if !l.nat.translate(from, b, &p.c) {
			continue
		}
		p.offer(b)
	}
}

// openTun makes side's TUN device, tun0, inside its namespace: the
// device is made in the calling thread's namespace, so a thread enters
// it, and then dies (its goroutine never unlocks it), since a thread
// in another namespace must not go back to the pool.
func (l *Link) openTun(side Side) (*os.File, error) {
	var f *os.File
	err := l.Do(side, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq("tun0")
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		f = os.NewFile(uintptr(fd), "tun0@"+l.ns[side])
		return nil
	})
	return f, err
}

// Do runs fn on a thread inside side's namespace: sockets it makes
// belong to that namespace and keep working from any goroutine after.
func (l *Link) Do(side Side, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked: the thread leaves with this goroutine.
		ns, err := os.Open("/var/run/netns/" + l.ns[side])
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", l.ns[side], err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Command runs a program on side (ip netns exec).
func (l *Link) Command(side Side, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.ns[side], name}, args...)...)
}

// Wrap makes cmd run on side, keeping its environment and I/O.
func (l *Link) Wrap(side Side, cmd *exec.Cmd) *exec.Cmd {
	path, err := exec.LookPath("ip")
	if err != nil {
		path = "ip"
	}
	cmd.Args = append([]string{"ip", "netns", "exec", l.ns[side], cmd.Path}, cmd.Args[1:]...)
	cmd.Path = path
	cmd.Err = nil
	return cmd
}

// Namespace is side's network namespace's name (for ip netns exec).
func (l *Link) Namespace(side Side) string { return l.ns[side] }

// SetShape changes what the direction from side does, from now on.
func (l *Link) SetShape(from Side, s Shape) { l.pipe[from].setShape(s) }

// Blackhole drops every packet both ways for d, from now.
func (l *Link) Blackhole(d time.Duration) {
	until := time.Now().Add(d)
	for _, p := range l.pipe {
		p.setBlackhole(until)
	}
}

// Rebind makes the NAT forget its mappings: from now, A's packets reach
// B from new source ports, and B's replies to the old ones are dropped,
// as when a home router reboots or a phone changes network.
func (l *Link) Rebind() { l.nat.rebind() }

// After calls fn once the direction from side has delivered n more bytes
// (of IP packets) than it has now: a test's way to act in the middle of a
// transfer, at a point the transfer itself reaches.
func (l *Link) After(from Side, n int64, fn func()) { l.pipe[from].after(n, fn) }

// Stats returns what the direction from side did.
func (l *Link) Stats(from Side) Stats { return l.pipe[from].c.stats() }

// Close stops the relay and removes the namespaces (and with them their
// devices and anything still bound there).
func (l *Link) Close() error {
	select {
	case <-l.done:
		return nil
	default:
	}
	close(l.done)
	var errs []error
	for i := range l.tun {
		if l.tun[i] != nil {
			l.tun[i].Close()
		}
	}
	l.wg.Wait()
	for _, ns := range l.ns {
		if ns != "" {
			if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
				errs = append(errs, ip("netns", "del", ns))
			}
		}
	}
	return errors.Join(errs...)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %v: %v: %s", args, err, out)
	}
	return nil
}

// nat rewrites A's source ports after a rebind. Before the first one it
// does nothing (a plain route); after each, A's flows get fresh ports,
// and the old mappings are gone.
type nat struct {
	mu   sync.Mutex
	gen  int
	fwd  map[uint16]uint16 // A's port -> the port B sees
	rev  map[uint16]uint16
	next uint16
}

func (n *nat) init() { n.fwd, n.rev = map[uint16]uint16{}, map[uint16]uint16{} }

func (n *nat) rebind() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gen++
	n.fwd, n.rev = map[uint16]uint16{}, map[uint16]uint16{}
	n.next = uint16(20000 + (n.gen*4099)%20000)
}

// translate rewrites b going from side; false drops it.
func (n *nat) translate(from Side, b []byte, c *counters) bool {
	src, dst, l4, proto, ok := ports(b)
	if !ok {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gen == 0 {
		return true
	}
	if from == A {
		mapped, seen := n.fwd[src]
		if !seen {
			for {
				n.next++
				if n.next < 20000 || n.next >= 60000 {
					n.next = 20000
				}
				if _, used := n.rev[n.next]; !used {
					break
				}
			}
			mapped = n.next
			n.fwd[src], n.rev[mapped] = mapped, src
		}
		setPort(b, l4, proto, 0, mapped)
		c.rebound.Add(1)
		return true
	}
	orig, known := n.rev[dst]
	if !known {
		c.natDrops.Add(1)
		return false
	}
	setPort(b, l4, proto, 2, orig)
	c.rebound.Add(1)
	return true
}
