package linkem

import (
	"encoding/binary"
	"errors"
	"math"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// newLink makes a link for a test, or fails saying what the machine
// lacks (CI runs as root, with iproute2 and /dev/net/tun).
func newLink(t *testing.T, cfg Config) *Link {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("the link emulator cannot run here: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// udpPair opens a UDP socket on each side, A's connected to B's.
func udpPair(t *testing.T, l *Link) (a, b *net.UDPConn) {
	t.Helper()
	if err := l.Do(B, func() (err error) {
		b, err = net.ListenUDP("udp4", &net.UDPAddr{IP: AddrB.AsSlice(), Port: 0})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.Do(A, func() (err error) {
		a, err = net.DialUDP("udp4", nil, b.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// receive reads numbered datagrams until none comes for quiet.
func receive(t *testing.T, c *net.UDPConn, quiet time.Duration) (seqs []uint32, from []netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 65536)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, addr, err := c.ReadFromUDPAddrPort(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return seqs, from
		}
		if err != nil {
			t.Fatal(err)
		}
		if n >= 4 {
			seqs = append(seqs, binary.BigEndian.Uint32(buf))
			from = append(from, addr)
		}
	}
}

func send(t *testing.T, c *net.UDPConn, n, size int, every time.Duration) {
	t.Helper()
	b := make([]byte, size)
	for i := range n {
		binary.BigEndian.PutUint32(b, uint32(i))
		if _, err := c.Write(b); err != nil {
			t.Error(err) // from the sending goroutine: Error, not Fatal
			return
		}
		if every > 0 {
			time.Sleep(every) // pacing the sender, not synchronising the test
		}
	}
}

// within checks a measured fraction against p, n trials, at five sigma.
func within(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	if d := math.Abs(float64(got) - p*float64(n)); d > 5*sigma+1 {
		t.Errorf("%s: %d of %d, want %.0f (5 sigma = %.0f)", what, got, n, p*float64(n), 5*sigma)
	}
}

// TestDelay: a round trip takes twice the one-way delay, plus little.
func TestDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	l := newLink(t, Config{AtoB: Shape{Delay: delay}, BtoA: Shape{Delay: delay}})
	a, b := udpPair(t, l)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := b.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			b.WriteToUDPAddrPort(buf[:n], addr)
		}
	}()
	var rtts []time.Duration
	buf := make([]byte, 1500)
	for i := range 30 {
		start := time.Now()
		binary.BigEndian.PutUint32(buf, uint32(i))
		a.Write(buf[:64])
		a.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := a.Read(buf); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	med := rtts[len(rtts)/2]
	t.Logf("round trip: min %v, median %v, max %v (one-way delay %v)", rtts[0], med, rtts[len(rtts)-1], delay)
	if rtts[0] < 2*delay || med > 2*delay+15*time.Millisecond {
		t.Errorf("round trips %v..%v, want from %v to a little more", rtts[0], med, 2*delay)
	}
}

// TestLossAndDuplication: the fractions lost and duplicated are the ones
// asked for, each direction on its own.
func TestLossAndDuplication(t *testing.T) {
	const n = 3000
	l := newLink(t, Config{AtoB: Shape{Loss: 0.1, Duplicate: 0.2}, Seed: 7})
	a, b := udpPair(t, l)
	go send(t, a, n, 100, 50*time.Microsecond)
	seqs, _ := receive(t, b, time.Second)
	st := l.Stats(A)
	t.Logf("sent %d, received %d; %+v", n, len(seqs), st)
	within(t, "lost", int(st.Lost), n, 0.1)
	within(t, "duplicated", int(st.Duplicated), n-int(st.Lost), 0.2)
	distinct := map[uint32]bool{}
	for _, s := range seqs {
		distinct[s] = true
	}
	if len(distinct) != n-int(st.Lost) || len(seqs) != len(distinct)+int(st.Duplicated) {
		t.Errorf("received %d datagrams, %d distinct; the link says %d lost and %d duplicated", len(seqs), len(distinct), st.Lost, st.Duplicated)
	}
	if back := l.Stats(B); back.Lost != 0 || back.Duplicated != 0 {
		t.Errorf("the other direction was shaped too: %+v", back)
	}
}

// TestReorder: reordered packets arrive after later ones.
func TestReorder(t *testing.T) {
	const n = 500
	l := newLink(t, Config{AtoB: Shape{Reorder: 0.2, ReorderBy: 20 * time.Millisecond}, Seed: 3})
	a, b := udpPair(t, l)
	go send(t, a, n, 100, 500*time.Microsecond)
	seqs, _ := receive(t, b, time.Second)
	late := 0
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			late++
		}
	}
	st := l.Stats(A)
	t.Logf("%d received, %d arrived after a later one; %d held back", len(seqs), late, st.Reordered)
	within(t, "held back", int(st.Reordered), n, 0.2)
	if len(seqs) != n || late < int(st.Reordered)/2 {
		t.Errorf("received %d of %d, %d out of order for %d held back", len(seqs), n, late, st.Reordered)
	}
}

// TestRate: a burst crosses at the rate; past the queue it is dropped.
func TestRate(t *testing.T) {
	const rate = 2 << 20 // 2 MiB/s
	l := newLink(t, Config{AtoB: Shape{Rate: rate, Queue: 4 << 20}})
	a, b := udpPair(t, l)
	const n, size = 1500, 1000 // 1.5 MB: 0.72 s at the rate
	start := time.Now()
	go send(t, a, n, size, 0)
	seqs, _ := receive(t, b, 500*time.Millisecond)
	took := time.Since(start) - 500*time.Millisecond
	got := float64(len(seqs)*(size+28)) / took.Seconds()
	t.Logf("%d datagrams in %v: %.2f MiB/s at a rate of %.2f MiB/s", len(seqs), took.Round(time.Millisecond), got/(1<<20), float64(rate)/(1<<20))
	if len(seqs) != n || got > 1.15*rate || got < 0.8*rate {
		t.Errorf("%d of %d at %.0f B/s, want all at %d B/s", len(seqs), n, got, rate)
	}
	// A queue of 64 KiB holds about 60 of them; the rest of a burst drop.
	l.SetShape(A, Shape{Rate: rate, Queue: 64 << 10})
	go send(t, a, n, size, 0)
	seqs, _ = receive(t, b, 500*time.Millisecond)
	if st := l.Stats(A); len(seqs) >= n/2 || st.QueueDrops == 0 {
		t.Errorf("a burst into a 64 KiB queue: %d of %d arrived, %d dropped", len(seqs), n, st.QueueDrops)
	}
}

// TestMaxPacketAndBlackhole: packets past MaxPacket vanish without a
// word; a blackhole drops everything for its time, then the link is back.
func TestMaxPacketAndBlackhole(t *testing.T) {
	l := newLink(t, Config{AtoB: Shape{MaxPacket: 1280}})
	a, b := udpPair(t, l)
	send(t, a, 1, 1280-28, 0)
	send(t, a, 1, 1281-28, 0)
	seqs, _ := receive(t, b, 300*time.Millisecond)
	if len(seqs) != 1 || l.Stats(A).TooBig != 1 {
		t.Errorf("1280 and 1281 bytes: %d arrived, %d too big", len(seqs), l.Stats(A).TooBig)
	}
	l.Blackhole(400 * time.Millisecond)
	send(t, a, 10, 100, 0)
	if seqs, _ := receive(t, b, 200*time.Millisecond); len(seqs) != 0 {
		t.Errorf("%d datagrams crossed a blackhole", len(seqs))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		send(t, a, 1, 100, 0)
		if seqs, _ := receive(t, b, 100*time.Millisecond); len(seqs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the link did not come back after the blackhole")
		}
	}
	if st := l.Stats(A); st.Blackholed < 10 {
		t.Errorf("blackholed %d", st.Blackholed)
	}
}

// TestRebind: after a rebind B sees A's datagrams from a new port, its
// replies to the new port reach A's socket, and replies to the old one
// are dropped, as by a NAT that forgot the mapping.
func TestRebind(t *testing.T) {
	l := newLink(t, Config{})
	a, b := udpPair(t, l)
	send(t, a, 1, 8, 0)
	_, from := receive(t, b, 200*time.Millisecond)
	if len(from) != 1 || from[0].Port() != uint16(a.LocalAddr().(*net.UDPAddr).Port) {
		t.Fatalf("before a rebind B saw %v, A is %v", from, a.LocalAddr())
	}
	old := from[0]
	l.Rebind()
	send(t, a, 1, 8, 0)
	_, from = receive(t, b, 200*time.Millisecond)
	if len(from) != 1 || from[0] == old {
		t.Fatalf("after a rebind B saw %v (before: %v)", from, old)
	}
	b.WriteToUDPAddrPort([]byte("to the old port!"), old)
	b.WriteToUDPAddrPort([]byte("to the new port!"), from[0])
	a.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	n, err := a.Read(buf)
	if err != nil || string(buf[:n]) != "to the new port!" {
		t.Fatalf("A got %q, %v", buf[:n], err)
	}
	if st := l.Stats(B); st.NATDrops != 1 {
		t.Errorf("replies to the forgotten mapping dropped: %d, want 1", st.NATDrops)
	}
}

// TestChecksumUpdate: the incremental update equals a full recompute.
func TestChecksumUpdate(t *testing.T) {
	data := []byte{0x12, 0x34, 0xab, 0xcd, 0x00, 0x10, 0xff, 0xfe, 7, 8, 9}
	for _, port := range []uint16{0, 1, 0xffff, 0x1234, 40000} {
		full := checksum(data, 0)
		b := slices.Clone(data)
		old := binary.BigEndian.Uint16(b)
		binary.BigEndian.PutUint16(b, port)
		if got, want := csumUpdate(full, old, port), checksum(b, 0); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Errorf("port %d: incremental %#x, full %#x", port, got, want)
		}
	}
}
