package index

import (
	"context"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
)

// FileObjects encodes a file of the given chunks: the top object, whose
// ref names the file, and the part objects it refers to (children before
// parents, so a store that receives them in order never holds a parent
// without its children).
func FileObjects(chunks []ChunkRef) (top []byte, parts [][]byte) {
	var size int64
	for _, c := range chunks {
		size += int64(c.Len)
	}
	if len(chunks) <= MaxChunksPerNode {
		return EncodeFile(&File{Size: size, Chunks: chunks}), nil
	}
	var level []Part
	for i := 0; i < len(chunks); i += MaxChunksPerNode {
		node := &File{Chunks: chunks[i:min(i+MaxChunksPerNode, len(chunks))]}
		for _, c := range node.Chunks {
			node.Size += int64(c.Len)
		}
		b := EncodeFile(node)
		parts = append(parts, b)
		level = append(level, Part{Ref: cas.Sum(b), Size: node.Size})
	}
	for len(level) > MaxChunksPerNode {
		var up []Part
		for i := 0; i < len(level); i += MaxChunksPerNode {
			node := &File{Parts: level[i:min(i+MaxChunksPerNode, len(level))]}
			for _, p := range node.Parts {
				node.Size += p.Size
			}
			b := EncodeFile(node)
			parts = append(parts, b)
			up = append(up, Part{Ref: cas.Sum(b), Size: node.Size})
		}
		level = up
	}
	return EncodeFile(&File{Size: size, Parts: level}), parts
}

// maxFileDepth bounds part nesting: 4096^4 chunks is more than any file.
// maxFileChunks bounds what one file may list, so that a small object
// repeating one part cannot make a reader allocate without limit.
const (
	maxFileDepth  = 4
	maxFileChunks = 1 << 22
)

// Chunks returns the chunks of the file object ref, in order, reading
// parts through g. It refuses nesting deeper than any writer makes and
// parts whose sizes disagree with their parent's.
func Chunks(ctx context.Context, g cas.Getter, ref cas.Ref) ([]ChunkRef, int64, error) {
	var out []ChunkRef
	var walk func(ref cas.Ref, want int64, depth int) (int64, error)
	walk = func(ref cas.Ref, want int64, depth int) (int64, error) {
		if depth > maxFileDepth {
			return 0, fmt.Errorf("%w: file %s nests deeper than %d", ErrMalformed, ref.Short(), maxFileDepth)
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		b, err := g.Get(ctx, ref)
		if err != nil {
			return 0, fmt.Errorf("file %s: %w", ref.Short(), err)
		}
		f, err := DecodeFile(b)
		if err != nil {
			return 0, fmt.Errorf("file %s: %w", ref.Short(), err)
		}
		if want >= 0 && f.Size != want {
			return 0, fmt.Errorf("%w: part %s is %d bytes, its parent says %d", ErrMalformed, ref.Short(), f.Size, want)
		}
		if len(out)+len(f.Chunks) > maxFileChunks {
			return 0, fmt.Errorf("%w: file lists more than %d chunks", ErrMalformed, maxFileChunks)
		}
		out = append(out, f.Chunks...)
		for _, p := range f.Parts {
			if _, err := walk(p.Ref, p.Size, depth+1); err != nil {
				return 0, err
			}
		}
		return f.Size, nil
	}
	size, err := walk(ref, -1, 0)
	return out, size, err
}
