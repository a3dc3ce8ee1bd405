package linkem

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Shape is what one direction of the link does to the packets it
// carries, in this order: a blackhole drops everything; a packet larger
// than MaxPacket is dropped (a path-MTU black hole: no ICMP comes back);
// Loss drops at random; the rate limit serializes packets at Rate through
// a queue of Queue bytes, dropping at its tail when full; then each packet
// is delayed by Delay plus a uniform jitter in [-Jitter, +Jitter]; with
// probability Reorder a packet is held ReorderBy longer, so later ones
// overtake it; with probability Duplicate it is delivered twice.
type Shape struct {
	Delay, Jitter time.Duration
	Loss          float64 // 0 to 1
	Duplicate     float64
	Reorder       float64
	ReorderBy     time.Duration // default 10 ms
	Rate          int64         // bytes per second; 0: unlimited
	Queue         int           // bytes; default 64 KiB, or a tenth of a second at Rate if more
	MaxPacket     int           // bytes; 0: no limit beyond the device MTU
}

func (s Shape) withDefaults() Shape {
	if s.ReorderBy == 0 {
		s.ReorderBy = 10 * time.Millisecond
	}
	if s.Queue == 0 {
		s.Queue = max(64<<10, int(s.Rate/10))
	}
	return s
}

// Stats count what one direction did.
type Stats struct {
	In        int64 `json:"in"`
	Delivered int64 `json:"delivered"`
	// DeliveredBytes is the IP bytes of the delivered packets: what a
	// throughput figure over the link counts.
	DeliveredBytes int64 `json:"delivered_bytes"`
	Lost           int64 `json:"lost"`        // Loss
	QueueDrops     int64 `json:"queue_drops"` // a full queue at the rate limit
	TooBig         int64 `json:"too_big"`     // MaxPacket
	Blackholed     int64 `json:"blackholed"`
	Duplicated     int64 `json:"duplicated"`
	Reordered      int64 `json:"reordered"`
	Rebound        int64 `json:"rebound"`     // ports rewritten by the NAT
	NATDrops       int64 `json:"nat_drops"`   // replies to a mapping the NAT forgot
	NotIPv4        int64 `json:"not_ipv4"`    // dropped: the link is IPv4
	WriteFails     int64 `json:"write_fails"` // the other device refused it
}

type counters struct {
	in, delivered, deliveredBytes, lost, queueDrops, tooBig, blackholed, duplicated, reordered, rebound, natDrops, notIPv4, writeFails atomic.Int64
}

func (c *counters) stats() Stats {
	return Stats{In: c.in.Load(), Delivered: c.delivered.Load(), DeliveredBytes: c.deliveredBytes.Load(), Lost: c.lost.Load(), QueueDrops: c.queueDrops.Load(),
		TooBig: c.tooBig.Load(), Blackholed: c.blackholed.Load(), Duplicated: c.duplicated.Load(), Reordered: c.reordered.Load(),
		Rebound: c.rebound.Load(), NATDrops: c.natDrops.Load(), NotIPv4: c.notIPv4.Load(), WriteFails: c.writeFails.Load()}
}

// pipe is one direction: packets read from one device wait in a heap by
// delivery time and are written to the other at that time.
type pipe struct {
	mu        sync.Mutex
	shape     Shape
	rng       *rand.Rand
	blackhole time.Time // drop everything until then
	// The rate limit's clock: when the last queued packet finishes
	// serializing.
	busyUntil time.Time
	q         packetHeap
	seq       uint64
	wake      chan struct{}
	c         counters
	now       func() time.Time
	// bytes delivered, and what waits for a count of them (After).
	bytes    int64
	triggers []trigger
}

type trigger struct {
	at int64
	fn func()
}

func newPipe(s Shape, seed uint64) *pipe {
	return &pipe{shape: s.withDefaults(), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), wake: make(chan struct{}, 1), now: time.Now}
}

type packet struct {
	at  time.Time
	seq uint64 // ties keep arrival order
	b   []byte
}

type packetHeap []packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// offer takes a packet read from the ingress device (b is the pipe's to
// keep) and schedules its delivery, or drops it.
func (p *pipe) offer(b []byte) {
	p.c.in.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	s := p.shape
	switch {
	case now.Before(p.blackhole):
		p.c.blackholed.Add(1)
		return
	case s.MaxPacket > 0 && len(b) > s.MaxPacket:
		p.c.tooBig.Add(1)
		return
	case s.Loss > 0 && p.rng.Float64() < s.Loss:
		p.c.lost.Add(1)
		return
	}
	at := now
	if s.Rate > 0 {
		start := p.busyUntil
		if start.Before(now) {
			start = now
		}
		// Bytes waiting ahead of this packet, at the rate.
		if backlog := int(start.Sub(now).Seconds() * float64(s.Rate)); backlog+len(b) > s.Queue {
			p.c.queueDrops.Add(1)
			return
		}
		p.busyUntil = start.Add(time.Duration(float64(len(b)) / float64(s.Rate) * float64(time.Second)))
		at = p.busyUntil
	}
	at = at.Add(s.Delay)
	if s.Jitter > 0 {
		at = at.Add(time.Duration((p.rng.Float64()*2 - 1) * float64(s.Jitter)))
	}
	if s.Reorder > 0 && p.rng.Float64() < s.Reorder {
		at = at.Add(s.ReorderBy)
		p.c.reordered.Add(1)
	}
	p.push(at, b)
	if s.Duplicate > 0 && p.rng.Float64() < s.Duplicate {
		p.c.duplicated.Add(1)
		p.push(at.Add(time.Duration(p.rng.Int64N(int64(time.Millisecond)+1))), append([]byte(nil), b...))
	}
}

func (p *pipe) push(at time.Time, b []byte) {
	p.seq++
	heap.Push(&p.q, packet{at: at, seq: p.seq, b: b})
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run delivers packets at their times until done closes.
func (p *pipe) run(deliver func([]byte) error, done <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		var due []packet
		now := p.now()
		for p.q.Len() > 0 && !p.q[0].at.After(now) {
			due = append(due, heap.Pop(&p.q).(packet))
		}
		next := time.Hour
		if p.q.Len() > 0 {
			next = p.q[0].at.Sub(now)
		}
		p.mu.Unlock()
		var n int64
		for _, pk := range due {
			if err := deliver(pk.b); err != nil {
				p.c.writeFails.Add(1)
			} else {
				p.c.delivered.Add(1)
				n += int64(len(pk.b))
			}
		}
		if n > 0 {
			p.c.deliveredBytes.Add(n)
			p.fire(n)
		}
		t.Reset(next)
		select {
		case <-t.C:
		case <-p.wake:
		case <-done:
			return
		}
	}
}

func (p *pipe) setShape(s Shape) {
	p.mu.Lock()
	p.shape = s.withDefaults()
	p.mu.Unlock()
}

func (p *pipe) setBlackhole(until time.Time) {
	p.mu.Lock()
	p.blackhole = until
	p.mu.Unlock()
}

// after calls fn (on its own goroutine) once n more bytes than now have
// been delivered.
func (p *pipe) after(n int64, fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.triggers = append(p.triggers, trigger{at: p.bytes + n, fn: fn})
}

func (p *pipe) fire(n int64) {
	p.mu.Lock()
	p.bytes += n
	var due []func()
	kept := p.triggers[:0]
	for _, t := range p.triggers {
		if t.at <= p.bytes {
			due = append(due, t.fn)
		} else {
			kept = append(kept, t)
		}
	}
	p.triggers = kept
	p.mu.Unlock()
	for _, fn := range due {
		go fn()
	}
}
