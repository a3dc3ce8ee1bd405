package restore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
)

// New small files are written in groups whose chunks come in one batched
// fetch. One fetch a file cost a request (a QUIC stream, a lookup of every
// ref on the server, a round trip) for a few bytes: a pull of 100,000
// small files made 100,000 of them.
const (
	groupFileMax  = 1 << 20 // files up to this size are grouped
	groupBytesMax = 8 << 20 // what a group's fetch holds in memory
	groupFilesMax = 256
)

type groupFile struct {
	path string
	e    index.Entry
}

// smallGroup collects new small files until it is worth a fetch.
type smallGroup struct {
	files []groupFile
	bytes int64
}

// add takes f and reports whether the group is full.
func (s *smallGroup) add(f groupFile) bool {
	s.files = append(s.files, f)
	s.bytes += f.e.Size
	return len(s.files) >= groupFilesMax || s.bytes >= groupBytesMax
}

// take hands out the files collected and starts a new group.
func (s *smallGroup) take() []groupFile {
	files := s.files
	s.files, s.bytes = nil, 0
	return files
}

// writeGroup fetches the chunks of files in one batch from chunks (when
// it batches) and writes each file with them. A file whose chunks the
// batch did not bring (its object is unreadable, or the fetch failed)
// meets the same error through writeFile that it would have alone.
func (w *writer) writeGroup(ctx context.Context, g, chunks cas.Getter, files []groupFile) error {
	src := chunks
	if bg, ok := chunks.(batchGetter); ok && len(files) > 1 {
		var refs []cas.Ref
		seen := cas.RefSet{}
		for _, f := range files {
			list, _, err := index.Chunks(ctx, g, f.e.Ref)
			if err != nil {
				continue // writeFile reports it, with the path
			}
			for _, c := range list {
				if !seen.Has(c.Ref) {
					seen.Add(c.Ref)
					refs = append(refs, c.Ref)
				}
			}
		}
		got := make(map[cas.Ref][]byte, len(refs))
		if err := bg.GetMany(ctx, refs, func(r cas.Ref, b []byte) error {
			got[r] = bytes.Clone(b) // valid only during the call
			return nil
		}); err != nil && ctx.Err() != nil {
			return err
		}
		src = fetched{got: got, next: chunks}
	}
	for _, f := range files {
		if err := w.writeFile(ctx, g, src, f.path, &f.e, nil); err != nil {
			return err
		}
	}
	return nil
}

// fetched answers from what a group's fetch brought, and asks next for
// the rest.
type fetched struct {
	got  map[cas.Ref][]byte
	next cas.Getter
}

func (f fetched) Get(ctx context.Context, ref cas.Ref) ([]byte, error) {
	if b, ok := f.got[ref]; ok {
		return b, nil
	}
	return f.next.Get(ctx, ref)
}

func (f fetched) GetMany(ctx context.Context, refs []cas.Ref, fn func(cas.Ref, []byte) error) error {
	for _, r := range refs {
		b, ok := f.got[r]
		if !ok {
			var err error
			if b, err = f.next.Get(ctx, r); err != nil {
				return fmt.Errorf("chunk %s: %w", r.Short(), err)
			}
		}
		if err := fn(r, b); err != nil {
			return err
		}
	}
	return nil
}
