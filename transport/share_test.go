package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// TestShareTokenReadsOnlyItsShare: a share link's connection reads the
// file it names (object and chunks) and nothing else: no other blob, no
// head, no put; a write token of another namespace cannot share this
// namespace's data.
func TestShareTokenReadsOnlyItsShare(t *testing.T) {
	ctx := context.Background()
	s := startServer(t)
	w := s.dial(t, "team", s.token(t, "team", PermWrite))
	chunk, other := []byte("the shared bytes"), []byte("not shared")
	top, _ := index.FileObjects([]index.ChunkRef{{Ref: cas.Sum(chunk), Len: uint32(len(chunk))}})
	for _, b := range [][]byte{chunk, other, top} {
		if err := w.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	file := cas.Sum(top)
	token, info, err := w.CreateShare(ctx, ShareInfo{Ref: file[:], Name: "f.txt", Size: int64(len(chunk))}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != "file" || info.Namespace != "team" {
		t.Fatalf("share %+v", info)
	}
	// Sharing a chunk (not a file or tree), or another namespace's
	// object, is refused.
	if _, _, err := w.CreateShare(ctx, ShareInfo{Ref: func() []byte { r := cas.Sum(chunk); return r[:] }(), Name: "x"}, time.Hour); err == nil {
		t.Error("a bare chunk was shared")
	}
	o := s.dial(t, "other", s.token(t, "other", PermWrite))
	if _, _, err := o.CreateShare(ctx, ShareInfo{Ref: file[:], Name: "x"}, time.Hour); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("sharing another namespace's file: %v, want ErrNotFound", err)
	}

	r := s.dial(t, "team", token)
	got, err := r.ShareInfo(ctx)
	if err != nil || got.ID != info.ID {
		t.Fatalf("share info: %+v %v", got, err)
	}
	if b, err := r.Get(ctx, cas.Sum(chunk)); err != nil || string(b) != string(chunk) {
		t.Fatalf("get of the shared chunk: %q %v", b, err)
	}
	if _, err := r.Get(ctx, cas.Sum(other)); err == nil {
		t.Error("a share link read a blob outside its share")
	}
	if _, err := r.Head(ctx, "r"); !errors.Is(err, ErrPermission) {
		t.Errorf("head with a share link: %v, want ErrPermission", err)
	}
	if _, err := r.Has(ctx, []cas.Ref{cas.Sum(other)}); !errors.Is(err, ErrPermission) {
		t.Errorf("has with a share link: %v, want ErrPermission", err)
	}
	// Revoked: the link stops working.
	if _, err := w.UpdateShare(ctx, info.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(ctx, s.addr, "team", ClientOptions{Token: token, Fingerprint: s.fp}); !errors.Is(err, ErrAuth) {
		t.Errorf("dial with a revoked share: %v, want ErrAuth", err)
	}
}
