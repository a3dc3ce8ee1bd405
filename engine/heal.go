package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"github.com/ferry-sync/ferry/transport"
)

// Healing: a store that finds a blob damaged calls it missing, and lists
// it for the namespaces that own it. Before each push the folder asks for
// that list and works out which of those blobs it holds: objects in its
// own cache are put again as they are; files whose content (or file
// object) is damaged, and directories whose tree is, lose their stat
// cache entries, so the push reads them again and sends what the store
// lacks, even though nothing changed here.

// damageLister is a remote that says which of the namespace's blobs it
// found damaged.
type damageLister interface {
	Damaged(ctx context.Context, limit int) ([]cas.Ref, error)
}

// maxHealRefs bounds the damaged blobs one push works on; the next push
// takes the rest.
const maxHealRefs = transport.MaxRefs

// healPlan is what this folder can send again of the remote's damage.
type healPlan struct {
	damaged cas.RefSet
	objects []cas.Ref // in the folder's object cache: put again
	files   []string  // cached files that hold damaged blobs: read again
	trees   []string  // directories whose cached tree is damaged
}

// count is how many things the folder will send again.
func (p *healPlan) count() int {
	if p == nil {
		return 0
	}
	return len(p.objects) + len(p.files) + len(p.trees)
}

// planHeal asks the remote for its damage and maps it to this folder.
// A remote that keeps no damage list (an older server) has none.
func (s *session) planHeal(ctx context.Context) (*healPlan, error) {
	dl, ok := s.remote.(damageLister)
	if !ok {
		return nil, nil
	}
	refs, err := dl.Damaged(ctx, maxHealRefs)
	var re *transport.RemoteError
	if errors.As(err, &re) && re.Code == "EPROTO" && strings.Contains(re.Msg, "unknown op") {
		return nil, nil
	}
	if err != nil || len(refs) == 0 {
		return nil, err
	}
	p := &healPlan{damaged: cas.RefSet{}}
	for _, r := range refs {
		p.damaged.Add(r)
	}
	cache := s.f.Cache()
	for _, r := range refs {
		if has, err := cache.Has(ctx, []cas.Ref{r}); err == nil && has[0] {
			p.objects = append(p.objects, r)
		}
	}
	// File lists come from this machine only: the folder's cache (which
	// holds every file object a scan or a pull of this folder made), or
	// a store on this machine. A file whose list cannot be read here is
	// read again when the list itself is damaged.
	var lists cas.Getter = cache
	if s.local() {
		lists = s.remote
	}
	err = s.f.StatCache().Files(func(path string, st state.Stat) error {
		if p.damaged.Has(st.Ref) {
			p.files = append(p.files, path)
			return nil
		}
		chunks, _, err := index.Chunks(ctx, lists, st.Ref)
		if err != nil {
			if errors.Is(err, cas.ErrCorrupt) {
				p.files = append(p.files, path)
			}
			return ctx.Err()
		}
		for _, c := range chunks {
			if p.damaged.Has(c.Ref) {
				p.files = append(p.files, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.f.StatCache().Trees(func(dir string, t state.TreeStat) error {
		if p.damaged.Has(t.Ref) {
			p.trees = append(p.trees, dir)
		}
		return nil
	})
	return p, err
}

// heal prepares the push to send again what the remote found damaged and
// this folder holds, and returns how many things that is.
func (s *session) heal(ctx context.Context) (int, error) {
	p, err := s.planHeal(ctx)
	if err != nil || p.count() == 0 {
		return 0, err
	}
	s.opts.Logger.Info("the store has damaged blobs this folder holds; sending them again",
		"damaged", len(p.damaged), "objects", len(p.objects), "files", len(p.files), "dirs", len(p.trees))
	for _, r := range p.objects {
		b, err := s.f.Cache().Get(ctx, r)
		if err != nil {
			continue // a damaged copy here too: the scan makes it anew, or not
		}
		if err := s.remote.Put(ctx, r, b); err != nil {
			return 0, fmt.Errorf("heal %s: %w", r.Short(), err)
		}
	}
	u := s.f.StatCache().Update()
	defer u.Discard()
	for _, path := range p.files {
		dir, name := "", path
		if i := strings.LastIndexByte(path, '/'); i >= 0 {
			dir, name = path[:i], path[i+1:]
		}
		if err := u.Delete(dir, name); err != nil {
			return 0, err
		}
	}
	for _, dir := range p.trees {
		if err := u.ForgetTree(dir); err != nil {
			return 0, err
		}
	}
	return p.count(), u.Commit()
}
