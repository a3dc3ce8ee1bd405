package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// errRelied marks a push that counted on content the remote no longer
// has: the stat cache said a file's chunks were sent, but a collection
// removed them meanwhile (they were sent by a push that never committed,
// so nothing kept them). pushRecovering reads every file again and
// retries.
var errRelied = errors.New("the server no longer has data this push counted on")

// conflictContentAtRemote checks, before a merge touches the folder, that
// the remote has every chunk of the conflict copies the merge made. A
// conflict copy is the one place where a merge writes content at a path
// it was not at: when that content is this folder's own, its chunks may
// be only on this disk (see errRelied), and the file that holds them is
// about to be replaced by the other side's. The folder is not changed
// until they are on the remote.
func (s *session) conflictContentAtRemote(ctx context.Context, root cas.Ref, conflicts []index.Conflict) error {
	if len(conflicts) == 0 {
		return nil
	}
	g := s.objects()
	var refs []cas.Ref
	seen := cas.RefSet{}
	addFile := func(ref cas.Ref) error {
		chunks, _, err := index.Chunks(ctx, g, ref)
		if err != nil {
			return err
		}
		for _, c := range chunks {
			if !seen.Has(c.Ref) {
				seen.Add(c.Ref)
				refs = append(refs, c.Ref)
			}
		}
		return nil
	}
	for _, c := range conflicts {
		e, err := index.Lookup(ctx, g, root, c.Copy)
		if err != nil {
			return fmt.Errorf("conflict copy %s: %w", c.Copy, err)
		}
		switch e.Kind {
		case index.KindFile:
			err = addFile(e.Ref)
		case index.KindDir:
			err = index.Walk(ctx, g, e.Ref, func(_ string, e index.Entry) error {
				if e.Kind == index.KindFile {
					return addFile(e.Ref)
				}
				return nil
			})
		}
		if errors.Is(err, cas.ErrNotFound) {
			return fmt.Errorf("conflict copy %s: %w: %w", c.Copy, errRelied, err)
		}
		if err != nil {
			return fmt.Errorf("conflict copy %s: %w", c.Copy, err)
		}
	}
	has, err := s.remote.Has(ctx, refs)
	if err != nil {
		return err
	}
	for i, ok := range has {
		if !ok {
			return fmt.Errorf("conflict copies: chunk %s: %w", refs[i].Short(), errRelied)
		}
	}
	return nil
}
