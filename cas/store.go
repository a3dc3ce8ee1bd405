package cas

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors; callers test them with errors.Is.
var (
	// ErrNotFound: the blob, head or tag does not exist (or, in a shared
	// store, belongs to another namespace: the two look the same).
	ErrNotFound = errors.New("not found")
	// ErrNoStore: a directory holds no store (it is also ErrNotFound).
	ErrNoStore = errors.New("no ferry store here")
	// ErrCorrupt: bytes do not hash to the ref they were stored or sent
	// under, or a stored record does not decode.
	ErrCorrupt = errors.New("corrupt data")
	// ErrTooBig: a blob is larger than MaxBlobSize.
	ErrTooBig = errors.New("blob too large")
	// ErrStale: a compare-and-swap of a head lost; see *StaleError.
	ErrStale = errors.New("stale head")
	// ErrLocked: another process has the store open.
	ErrLocked = errors.New("the store is locked by another process")
	// ErrInvalidName: a namespace, root or tag name breaks the name rule.
	ErrInvalidName = errors.New("invalid name")
)

// MaxBlobSize bounds every blob: chunks (chunk.MaxSize) and encoded
// objects. Decoders refuse to allocate more.
const MaxBlobSize = 16 << 20

// Getter reads blobs. Get returns the raw bytes, verified against ref.
type Getter interface {
	Get(ctx context.Context, ref Ref) ([]byte, error)
}

// Haser answers "which of these do you have" in one batch: has[i] is for
// refs[i].
type Haser interface {
	Has(ctx context.Context, refs []Ref) (has []bool, err error)
}

// Putter stores blobs. Put verifies that data hashes to ref. A blob is
// durable once Flush returns, and always before a head that names it moves.
type Putter interface {
	Put(ctx context.Context, ref Ref, data []byte) error
	Flush(ctx context.Context) error
}

// Lister enumerates every blob ref, in no promised order.
type Lister interface {
	List(ctx context.Context, fn func(Ref) error) error
}

// Deleter removes blobs; deleting an absent ref is not an error.
type Deleter interface {
	Delete(ctx context.Context, refs []Ref) error
}

// Store is all of the above. Consumers should ask for the smallest part
// they need.
type Store interface {
	Getter
	Haser
	Putter
	Lister
	Deleter
}

// HistoryEntry is one version a root's head has pointed at.
type HistoryEntry struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"` // when the store moved the head, by its clock
	Ref  Ref       `json:"ref"`
}

// Heads keeps the named pointers of one namespace: for each root, its head
// (moved only by compare-and-swap), the history of every value it took, and
// tags.
type Heads interface {
	// Head returns the root's current head, or ErrNotFound.
	Head(ctx context.Context, root string) (Ref, error)
	// SwapHead moves the head from old (the zero Ref for a new root) to new
	// and appends new to the history, atomically and durably, after making
	// every blob put so far durable. When the head is not old it returns a
	// *StaleError.
	SwapHead(ctx context.Context, root string, old, new Ref) error
	// History lists the root's entries, oldest first.
	History(ctx context.Context, root string) ([]HistoryEntry, error)
	// Roots lists the roots that have a head, sorted.
	Roots(ctx context.Context) ([]string, error)
	// SetTag names ref; the zero Ref removes the tag.
	SetTag(ctx context.Context, root, tag string, ref Ref) error
	// Tags returns the root's tags.
	Tags(ctx context.Context, root string) (map[string]Ref, error)
}

// StaleError says a SwapHead lost: the head was Current, not the Old the
// caller expected.
type StaleError struct {
	Root         string
	Old, Current Ref
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("cas: stale head of %q: expected %s, head is %s", e.Root, shortOrNone(e.Old), shortOrNone(e.Current))
}

func (e *StaleError) Is(target error) bool { return target == ErrStale }

func shortOrNone(r Ref) string {
	if r.IsZero() {
		return "none"
	}
	return r.Short()
}
