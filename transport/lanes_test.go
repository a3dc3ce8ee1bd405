package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ferry-sync/ferry/cas"
	"github.com/quic-go/quic-go"
)

// TestClientLanes spreads puts and gets over several connections: each is
// authenticated on its own, each carries part of the bytes, and what went
// up comes back whole.
func TestClientLanes(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	tok := s.token(t, "a", PermWrite)
	c, err := Dial(ctx, s.addr, "a", ClientOptions{Token: tok, Fingerprint: s.fp, Device: "laned", Streams: 6, Connections: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.lanes) != 3 {
		t.Fatalf("%d connections, want 3", len(c.lanes))
	}
	// Enough blobs that every sender closes several put streams.
	refs := putRandom(t, c, 48, 512<<10)
	var got int
	for range 3 { // three GetMany calls: one on each lane
		if err := c.GetMany(ctx, refs[:8], func(r cas.Ref, b []byte) error {
			if cas.Sum(b) != r {
				t.Errorf("blob %s came back as other bytes", r.Short())
			}
			got++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got != 24 {
		t.Fatalf("got %d blobs, want 24", got)
	}
	admin, err := Dial(ctx, s.addr, "", ClientOptions{Token: s.admin, Fingerprint: s.fp})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	infos, err := admin.Clients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var in, out []int64
	for _, ci := range infos {
		if ci.Device == "laned" {
			in, out = append(in, ci.BytesIn), append(out, ci.BytesOut)
		}
	}
	if len(in) != 3 {
		t.Fatalf("the server sees %d sessions of the client, want 3: %+v", len(in), infos)
	}
	for i := range in {
		// 48 blobs of 512 KiB over 6 senders on 3 lanes: each lane
		// carries two senders' share, and one get of 4 MiB.
		if in[i] < 4<<20 || out[i] < 4<<20 {
			t.Errorf("connection %d moved %d bytes up and %d down: the lanes are not all used (%v, %v)", i, in[i], out[i], in, out)
		}
	}
}

// TestClientLanesCapped: a client whose extra connections pass the
// token's cap fails to dial, saying so, and leaves no connection open.
func TestClientLanesCapped(t *testing.T) {
	s := startServerOpts(t, ServerOptions{Limits: Limits{ConnsPerToken: 2}})
	ctx := context.Background()
	tok := s.token(t, "a", PermWrite)
	_, err := Dial(ctx, s.addr, "a", ClientOptions{Token: tok, Fingerprint: s.fp, Connections: 3})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "max 2") || !strings.Contains(err.Error(), "connection 3 of 3") {
		t.Fatalf("dial of 3 connections with a cap of 2: %v", err)
	}
	// Its connections are gone: a client of two fits.
	c, err := Dial(ctx, s.addr, "a", ClientOptions{Token: tok, Fingerprint: s.fp, Connections: 2})
	if err != nil {
		t.Fatalf("after the refused client: %v", err)
	}
	ref := putRandom(t, c, 1, 1000)[0]
	b, err := c.Get(ctx, ref)
	if err != nil || cas.Sum(b) != ref {
		t.Fatalf("get: %v", err)
	}
	c.Close()
}

// TestLaneLost: a further connection that QUIC itself ended (a busy
// server's refusal, a timeout) is done without; a refusal by the server's
// policy (a token's connection cap) still fails the dial.
func TestLaneLost(t *testing.T) {
	tests := []struct {
		name string
		err  error
		lost bool
	}{
		{"refused by a full accept queue", fmt.Errorf("hello: %w", &quic.TransportError{ErrorCode: quic.ConnectionRefused, Remote: true}), true},
		{"idle timeout", &quic.IdleTimeoutError{}, true},
		{"handshake timeout", fmt.Errorf("dial: %w", &quic.HandshakeTimeoutError{}), true},
		{"token's connection cap", fmt.Errorf("%w: max 2 connections", ErrUnavailable), false},
		{"wrong certificate", ErrFingerprint, false},
		{"protocol", ErrProtocol, false},
	}
	for _, tt := range tests {
		if got := laneLost(tt.err); got != tt.lost {
			t.Errorf("%s: laneLost = %v, want %v", tt.name, got, tt.lost)
		}
	}
}
