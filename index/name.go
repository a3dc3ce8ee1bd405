package index

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrInvalidPath is returned for names and paths that break the name rule.
var ErrInvalidPath = errors.New("invalid path")

// ErrNotPortable: a name Windows cannot hold (see PortableName); a
// portable namespace refuses it. It is an ErrInvalidPath too.
var ErrNotPortable = fmt.Errorf("%w: not portable", ErrInvalidPath)

// Limits every decoder and walker enforces.
const (
	MaxNameLen       = 255
	MaxPathLen       = 4096
	MaxDepth         = 256
	MaxEntries       = 1 << 20
	MaxTargetLen     = 4096
	MaxChunksPerNode = 4096
	MaxParents       = 16
	MaxMessageLen    = 64 << 10
)

// StateDir is the folder's own state directory; TempPrefix starts the
// names of files being written. Both are reserved at every level.
const (
	StateDir   = ".ferry"
	TempPrefix = ".ferry-tmp-"
)

// ValidName reports whether name may be one entry of a tree: one path
// component, valid UTF-8 in NFC, 1 to 255 bytes, not "." or "..", no '/',
// '\\', NUL, C0 control or DEL, and not a reserved name. Anything that
// would need cleaning is refused, never cleaned: two spellings of one name
// would alias two entries. A name that folds to a reserved one (".FERRY",
// ".fe\u200crry") is reserved too: on a case-insensitive filesystem it is
// the folder's own state.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidPath)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes (max %d)", ErrInvalidPath, len(name), MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("%w: name %q", ErrInvalidPath, name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name %q is not UTF-8", ErrInvalidPath, name)
	case reserved(name):
		return fmt.Errorf("%w: name %q is reserved (or is one of ferry's own names where case folds)", ErrInvalidPath, name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f || c == '/' || c == '\\' {
			return fmt.Errorf("%w: name %q contains %q", ErrInvalidPath, name, c)
		}
	}
	if !norm.NFC.IsNormalString(name) {
		return fmt.Errorf("%w: name %q is not in Unicode NFC", ErrInvalidPath, name)
	}
	return nil
}

// ValidPath reports whether p is a relative slash-separated path of valid
// names (as restore and log take from users and manifests).
func ValidPath(p string) error {
	if len(p) > MaxPathLen {
		return fmt.Errorf("%w: path of %d bytes (max %d)", ErrInvalidPath, len(p), MaxPathLen)
	}
	parts := strings.Split(p, "/")
	if len(parts) > MaxDepth {
		return fmt.Errorf("%w: path deeper than %d", ErrInvalidPath, MaxDepth)
	}
	for _, part := range parts {
		if err := ValidName(part); err != nil {
			return fmt.Errorf("%w (in %q)", err, p)
		}
	}
	return nil
}

// JoinPath joins a directory path ("" for the root) and a name.
func JoinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
