package index

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"reflect"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/fxamacker/cbor/v2"
)

// ErrMalformed is returned for object bytes that do not decode under the
// strict rules of doc.go.
var ErrMalformed = errors.New("malformed object")

const (
	typeFile    = 1
	typeTree    = 2
	typeVersion = 3
	format1     = 1
)

// Wire forms, apart from the domain types so either can change without
// the other.
type (
	wireChunk struct {
		_   struct{} `cbor:",toarray"`
		Ref []byte
		Len uint32
	}
	wirePart struct {
		_    struct{} `cbor:",toarray"`
		Ref  []byte
		Size uint64
	}
	wireFile struct {
		_      struct{} `cbor:",toarray"`
		Type   uint8
		Format uint8
		Size   uint64
		Chunks []wireChunk
		Parts  []wirePart
	}
	wireEntry struct {
		_      struct{} `cbor:",toarray"`
		Name   string
		Kind   uint8
		Mode   uint32
		MTime  int64
		Size   uint64
		Ref    []byte
		Target string
	}
	wireTree struct {
		_       struct{} `cbor:",toarray"`
		Type    uint8
		Format  uint8
		Entries []wireEntry
	}
	wireVersionBody struct {
		Root      []byte         `cbor:"1,keyasint"`
		Parents   [][]byte       `cbor:"2,keyasint"`
		Time      int64          `cbor:"3,keyasint"`
		Device    string         `cbor:"4,keyasint"`
		Message   string         `cbor:"5,keyasint"`
		Counters  []uint64       `cbor:"6,keyasint"`
		Conflicts []wireConflict `cbor:"7,keyasint,omitempty"`
	}
	wireConflict struct {
		_    struct{} `cbor:",toarray"`
		Path string
		Copy string
		Kind string
	}
	wireVersion struct {
		_      struct{} `cbor:",toarray"`
		Type   uint8
		Format uint8
		Body   wireVersionBody
	}
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	eo := cbor.CoreDetEncOptions()
	eo.NilContainers = cbor.NilContainerAsEmpty
	var err error
	if encMode, err = eo.EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:             cbor.DupMapKeyEnforcedAPF,
		IndefLength:           cbor.IndefLengthForbidden,
		TagsMd:                cbor.TagsForbidden,
		MaxNestedLevels:       8,
		MaxArrayElements:      MaxEntries,
		MaxMapPairs:           16,
		ExtraReturnErrors:     cbor.ExtraDecErrorUnknownField,
		DefaultByteStringType: reflect.TypeOf([]byte(nil)),
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// decodeStrict decodes b into v and refuses any b that is not the one
// canonical encoding of what it decoded to.
func decodeStrict(what string, b []byte, v any) error {
	if len(b) > cas.MaxBlobSize {
		return fmt.Errorf("%w: %s of %d bytes", ErrMalformed, what, len(b))
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if !bytes.Equal(again, b) {
		return fmt.Errorf("%w: %s is not in canonical form", ErrMalformed, what)
	}
	return nil
}

func mustMarshal(v any) []byte {
	b, err := encMode.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("index: encode %T: %v", v, err))
	}
	return b
}

func refBytes(r cas.Ref) []byte { return append([]byte(nil), r[:]...) }

func toRef(b []byte, what string) (cas.Ref, error) {
	if len(b) != len(cas.Ref{}) {
		return cas.Ref{}, fmt.Errorf("%w: %s ref of %d bytes", ErrMalformed, what, len(b))
	}
	return cas.Ref(b), nil
}

// Object types, as TypeOf returns them.
const (
	TypeFile    = typeFile
	TypeTree    = typeTree
	TypeVersion = typeVersion
)

// TypeOf returns the object type tag of encoded object bytes (1 file,
// 2 tree, 3 version), for walkers that meet refs of unknown type.
func TypeOf(b []byte) (int, error) {
	var arr []cbor.RawMessage
	var typ, format uint8
	if err := decMode.Unmarshal(b, &arr); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(arr) < 2 || decMode.Unmarshal(arr[0], &typ) != nil || decMode.Unmarshal(arr[1], &format) != nil {
		return 0, fmt.Errorf("%w: no type and format", ErrMalformed)
	}
	if format != format1 || typ < typeFile || typ > typeVersion {
		return 0, fmt.Errorf("%w: type %d format %d", ErrMalformed, typ, format)
	}
	return int(typ), nil
}

// EncodeFile returns the canonical bytes of f. It does not validate f;
// use NewFile to build valid files.
func EncodeFile(f *File) []byte {
	w := wireFile{Type: typeFile, Format: format1, Size: uint64(f.Size)}
	for _, c := range f.Chunks {
		w.Chunks = append(w.Chunks, wireChunk{Ref: refBytes(c.Ref), Len: c.Len})
	}
	for _, p := range f.Parts {
		w.Parts = append(w.Parts, wirePart{Ref: refBytes(p.Ref), Size: uint64(p.Size)})
	}
	return mustMarshal(&w)
}

// DecodeFile decodes and validates a file object.
func DecodeFile(b []byte) (*File, error) {
	var w wireFile
	if err := decodeStrict("file", b, &w); err != nil {
		return nil, err
	}
	if w.Type != typeFile || w.Format != format1 {
		return nil, fmt.Errorf("%w: not a file object (type %d format %d)", ErrMalformed, w.Type, w.Format)
	}
	if len(w.Chunks) > MaxChunksPerNode || len(w.Parts) > MaxChunksPerNode {
		return nil, fmt.Errorf("%w: file node lists %d chunks and %d parts (max %d)", ErrMalformed, len(w.Chunks), len(w.Parts), MaxChunksPerNode)
	}
	if len(w.Chunks) > 0 && len(w.Parts) > 0 {
		return nil, fmt.Errorf("%w: file node has both chunks and parts", ErrMalformed)
	}
	if w.Size > math.MaxInt64 {
		return nil, fmt.Errorf("%w: file size %d", ErrMalformed, w.Size)
	}
	f := &File{Size: int64(w.Size)}
	var total uint64
	for _, c := range w.Chunks {
		ref, err := toRef(c.Ref, "chunk")
		if err != nil {
			return nil, err
		}
		if c.Len == 0 || c.Len > cas.MaxBlobSize {
			return nil, fmt.Errorf("%w: chunk of %d bytes", ErrMalformed, c.Len)
		}
		total += uint64(c.Len)
		f.Chunks = append(f.Chunks, ChunkRef{Ref: ref, Len: c.Len})
	}
	for _, p := range w.Parts {
		ref, err := toRef(p.Ref, "part")
		if err != nil {
			return nil, err
		}
		if p.Size == 0 || p.Size > math.MaxInt64-total {
			return nil, fmt.Errorf("%w: part of %d bytes", ErrMalformed, p.Size)
		}
		total += p.Size
		f.Parts = append(f.Parts, Part{Ref: ref, Size: int64(p.Size)})
	}
	if total != w.Size {
		return nil, fmt.Errorf("%w: file size %d but its chunks add up to %d", ErrMalformed, w.Size, total)
	}
	return f, nil
}

// EncodeTree returns the canonical bytes of t. It does not validate t.
func EncodeTree(t *Tree) []byte {
	w := wireTree{Type: typeTree, Format: format1, Entries: make([]wireEntry, 0, len(t.Entries))}
	for _, e := range t.Entries {
		we := wireEntry{Name: e.Name, Kind: uint8(e.Kind), Mode: modeBits(e.Mode), MTime: e.MTime, Size: uint64(e.Size), Target: e.Target}
		if !e.Ref.IsZero() {
			we.Ref = refBytes(e.Ref)
		}
		w.Entries = append(w.Entries, we)
	}
	return mustMarshal(&w)
}

// modeBits maps an fs.FileMode to the Unix permission bits stored (0o7777).
func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func modeFromBits(b uint32) fs.FileMode {
	m := fs.FileMode(b & 0o777)
	if b&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if b&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if b&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// DecodeTree decodes and validates a tree object: the name rule, strictly
// increasing names, and a consistent kind, ref and target per entry.
func DecodeTree(b []byte) (*Tree, error) {
	var w wireTree
	if err := decodeStrict("tree", b, &w); err != nil {
		return nil, err
	}
	if w.Type != typeTree || w.Format != format1 {
		return nil, fmt.Errorf("%w: not a tree object (type %d format %d)", ErrMalformed, w.Type, w.Format)
	}
	t := &Tree{Entries: make([]Entry, 0, len(w.Entries))}
	for i, we := range w.Entries {
		if err := ValidName(we.Name); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrMalformed, i, err)
		}
		if i > 0 && we.Name <= w.Entries[i-1].Name {
			return nil, fmt.Errorf("%w: entry %q after %q: names unsorted or duplicate", ErrMalformed, we.Name, w.Entries[i-1].Name)
		}
		if we.Mode > 0o7777 || we.Size > math.MaxInt64 {
			return nil, fmt.Errorf("%w: entry %q: mode %o size %d", ErrMalformed, we.Name, we.Mode, we.Size)
		}
		e := Entry{Name: we.Name, Kind: Kind(we.Kind), Mode: modeFromBits(we.Mode), MTime: we.MTime, Size: int64(we.Size), Target: we.Target}
		switch e.Kind {
		case KindFile, KindDir:
			ref, err := toRef(we.Ref, e.Kind.String())
			if err != nil {
				return nil, fmt.Errorf("entry %q: %w", we.Name, err)
			}
			if e.Target != "" {
				return nil, fmt.Errorf("%w: %s entry %q has a link target", ErrMalformed, e.Kind, we.Name)
			}
			e.Ref = ref
		case KindSymlink:
			if len(we.Ref) != 0 {
				return nil, fmt.Errorf("%w: symlink entry %q has a ref", ErrMalformed, we.Name)
			}
			if e.Target == "" || len(e.Target) > MaxTargetLen || bytes.IndexByte([]byte(e.Target), 0) >= 0 || int64(len(e.Target)) != e.Size {
				return nil, fmt.Errorf("%w: symlink entry %q: bad target", ErrMalformed, we.Name)
			}
		default:
			return nil, fmt.Errorf("%w: entry %q of kind %d", ErrMalformed, we.Name, we.Kind)
		}
		t.Entries = append(t.Entries, e)
	}
	return t, nil
}

// EncodeVersion returns the canonical bytes of v.
func EncodeVersion(v *Version) []byte {
	w := wireVersion{Type: typeVersion, Format: format1, Body: wireVersionBody{
		Root:     refBytes(v.Root),
		Parents:  make([][]byte, 0, len(v.Parents)),
		Time:     v.Time.UnixNano(),
		Device:   v.Device,
		Message:  v.Message,
		Counters: []uint64{uint64(v.Summary.Files), uint64(v.Summary.Dirs), uint64(v.Summary.Symlinks), uint64(v.Summary.Bytes)},
	}}
	for _, p := range v.Parents {
		w.Body.Parents = append(w.Body.Parents, refBytes(p))
	}
	for _, c := range v.Conflicts {
		w.Body.Conflicts = append(w.Body.Conflicts, wireConflict{Path: c.Path, Copy: c.Copy, Kind: c.Kind})
	}
	return mustMarshal(&w)
}

// DecodeVersion decodes and validates a version object.
func DecodeVersion(b []byte) (*Version, error) {
	var w wireVersion
	if err := decodeStrict("version", b, &w); err != nil {
		return nil, err
	}
	if w.Type != typeVersion || w.Format != format1 {
		return nil, fmt.Errorf("%w: not a version object (type %d format %d)", ErrMalformed, w.Type, w.Format)
	}
	body := w.Body
	root, err := toRef(body.Root, "root")
	if err != nil {
		return nil, err
	}
	if len(body.Parents) > MaxParents || len(body.Counters) != 4 || len(body.Device) > 64 || len(body.Message) > MaxMessageLen {
		return nil, fmt.Errorf("%w: version fields out of bounds", ErrMalformed)
	}
	v := &Version{Root: root, Time: time.Unix(0, body.Time).UTC(), Device: body.Device, Message: body.Message}
	for _, p := range body.Parents {
		ref, err := toRef(p, "parent")
		if err != nil {
			return nil, err
		}
		v.Parents = append(v.Parents, ref)
	}
	for _, c := range body.Counters {
		if c > math.MaxInt64 {
			return nil, fmt.Errorf("%w: version counter %d", ErrMalformed, c)
		}
	}
	v.Summary = Summary{Files: int64(body.Counters[0]), Dirs: int64(body.Counters[1]), Symlinks: int64(body.Counters[2]), Bytes: int64(body.Counters[3])}
	if len(body.Conflicts) > 10000 {
		return nil, fmt.Errorf("%w: %d conflicts in one version", ErrMalformed, len(body.Conflicts))
	}
	for _, c := range body.Conflicts {
		copyOK := ValidPath(c.Copy) == nil && (c.Kind == "content" || c.Kind == "dir-file") ||
			c.Copy == "" && c.Kind == ConflictOverridden
		if ValidPath(c.Path) != nil || !copyOK {
			return nil, fmt.Errorf("%w: conflict record %q", ErrMalformed, c.Path)
		}
		v.Conflicts = append(v.Conflicts, Conflict{Path: c.Path, Copy: c.Copy, Kind: c.Kind})
	}
	return v, nil
}
