package transport

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInvite: an invite's connection may only redeem it; it redeems
// once, for a device token with the invite's permission on its namespace;
// of two devices redeeming at once exactly one wins; an invite expires;
// nobody invites beyond their own permission, nor as admin.
func TestInvite(t *testing.T) {
	ctx := context.Background()
	var skew atomic.Int64
	s := startServerOpts(t, ServerOptions{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	w := s.dial(t, "team", s.token(t, "team", PermWrite))

	if _, _, err := w.CreateInvite(ctx, "photos", PermAdmin, time.Hour, ""); !errors.Is(err, ErrPermission) {
		t.Errorf("an admin invite: %v, want ErrPermission", err)
	}
	if _, _, err := w.CreateInvite(ctx, "photos", PermWrite, MaxInviteTTL+time.Hour, ""); !errors.Is(err, ErrProtocol) {
		t.Errorf("an invite beyond the longest ttl: %v, want ErrProtocol", err)
	}
	r := s.dial(t, "team", s.token(t, "team", PermRead))
	if _, _, err := r.CreateInvite(ctx, "photos", PermRead, time.Hour, ""); !errors.Is(err, ErrPermission) {
		t.Errorf("an invite by a read token: %v, want ErrPermission", err)
	}

	token, info, err := w.CreateInvite(ctx, "photos", PermRead, time.Hour, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if info.Namespace != "team" || info.Root != "photos" || info.Perm != PermRead {
		t.Fatalf("invite %+v", info)
	}
	inv := s.dial(t, "team", token)
	if _, err := inv.Head(ctx, "photos"); !errors.Is(err, ErrPermission) {
		t.Errorf("head with an invite: %v, want ErrPermission", err)
	}
	if _, _, err := inv.CreateInvite(ctx, "photos", PermRead, time.Hour, ""); !errors.Is(err, ErrPermission) {
		t.Errorf("an invite by an invite: %v, want ErrPermission", err)
	}

	// Two redeem at once: one device token, one refusal.
	var wg sync.WaitGroup
	var won atomic.Int32
	var dev string
	var mu sync.Mutex
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, ti, got, err := inv.Redeem(ctx, "phone")
			if err != nil {
				if !errors.Is(err, ErrAuth) {
					t.Errorf("the losing redeem: %v, want ErrAuth", err)
				}
				return
			}
			won.Add(1)
			if ti.Perm != string(PermRead) || ti.Namespace != "team" || got.Root != "photos" || !strings.Contains(ti.Label, "phone") {
				t.Errorf("device token %+v from invite %+v", ti, got)
			}
			mu.Lock()
			dev = tok
			mu.Unlock()
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d redeems of one invite won, want 1", won.Load())
	}
	d := s.dial(t, "team", dev)
	if d.Perm() != PermRead {
		t.Errorf("the device token allows %s, want read", d.Perm())
	}
	if _, err := d.Roots(ctx); err != nil {
		t.Errorf("the device token cannot read its namespace: %v", err)
	}
	if _, err := Dial(ctx, s.addr, "team", ClientOptions{Token: token, Fingerprint: s.fp}); !errors.Is(err, ErrAuth) {
		t.Errorf("dial with a used invite: %v, want ErrAuth", err)
	}

	// Expiry: the server's clock passes the invite's end between the
	// hello and the redeem, and the redeem is refused; the token store's
	// clock refuses the hello.
	token, _, err = w.CreateInvite(ctx, "photos", PermWrite, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	late := s.dial(t, "team", token)
	skew.Store(int64(2 * time.Hour))
	if _, _, _, err := late.Redeem(ctx, ""); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("redeem of an expired invite: %v, want ErrAuth (expired)", err)
	}
	later, err := NewTokens(s.db, func() time.Time { return time.Now().Add(2 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := later.Lookup(token); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("lookup of an expired invite: %v, want ErrAuth (expired)", err)
	}
}

func FuzzParseInviteLink(f *testing.F) {
	l := InviteLink{Addr: "127.0.0.1:7443", Namespace: "team", Root: "photos", Token: "ferry_" + strings.Repeat("a", tokenLen), Fingerprint: strings.Repeat("ab", 32)}
	f.Add(l.String())
	f.Add("quic://h:1/ns?invite=x&root=r&fp=y")
	f.Add("quic://[::1]:7443/ns?invite=ferry_aaaa&root=&fp=")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseInviteLink(s)
		if err != nil {
			return
		}
		// What parses prints as an invite that parses to the same parts.
		again, err := ParseInviteLink(l.String())
		if err != nil || again != l {
			t.Fatalf("%q parsed to %+v, which prints as %q and parses to %+v, %v", s, l, l.String(), again, err)
		}
	})
}
