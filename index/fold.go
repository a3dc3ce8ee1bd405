package index

import (
	"fmt"
	"strings"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Names that are two on Linux can be one elsewhere: macOS, Windows and
// case-folding filesystems fold case, HFS+ also drops some code points,
// and macOS writes NFD. FoldName is the key under which names collide on
// such a filesystem; PortableName is the rule a portable namespace adds.

var folder = cases.Fold()

// FoldName returns the form under which two names are one on a
// case-insensitive filesystem: NFC, case folded, without the code points
// HFS+ ignores.
func FoldName(name string) string {
	return norm.NFC.String(folder.String(dropIgnorable(name)))
}

// ignorable reports the code points HFS+ leaves out of names when it
// compares them (zero-width joiners and direction marks among them), so
// that ".fe\u200crry" is ".ferry" there.
func ignorable(r rune) bool {
	switch {
	case r >= 0x200B && r <= 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x206A && r <= 0x206F, r == 0xFEFF:
		return true
	}
	return false
}

func dropIgnorable(s string) string {
	if strings.IndexFunc(s, ignorable) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if ignorable(r) {
			return -1
		}
		return r
	}, s)
}

// reserved reports whether name is one of ferry's own names, or folds to
// one: on a case-insensitive filesystem ".FERRY" is the state directory.
func reserved(name string) bool {
	if ascii(name) {
		// Every name is checked on every scan: plain ASCII, the common
		// case, needs no Unicode folding.
		return strings.EqualFold(name, StateDir) || len(name) >= len(TempPrefix) && strings.EqualFold(name[:len(TempPrefix)], TempPrefix)
	}
	f := FoldName(name)
	return f == StateDir || strings.HasPrefix(f, TempPrefix)
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// windowsReserved are the device names Windows refuses as a file name,
// with any extension ("nul.txt" too).
var windowsReserved = map[string]bool{
	"con": true, "prn": true, "aux": true, "nul": true,
	"com0": true, "com1": true, "com2": true, "com3": true, "com4": true, "com5": true, "com6": true, "com7": true, "com8": true, "com9": true,
	"com¹": true, "com²": true, "com³": true,
	"lpt0": true, "lpt1": true, "lpt2": true, "lpt3": true, "lpt4": true, "lpt5": true, "lpt6": true, "lpt7": true, "lpt8": true, "lpt9": true,
	"lpt¹": true, "lpt²": true, "lpt³": true,
}

// PortableName reports why Windows (or a FAT or NTFS volume) cannot hold
// name, or nil: a reserved device name, a trailing dot or space, or a
// character it refuses (< > : " | ? * and, as everywhere, controls).
func PortableName(name string) error {
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return fmt.Errorf("%w: %q ends in a dot or a space, which Windows drops", ErrNotPortable, name)
	}
	if i := strings.IndexAny(name, `<>:"|?*`); i >= 0 {
		return fmt.Errorf("%w: %q contains %q, which Windows refuses in names", ErrNotPortable, name, name[i])
	}
	base, _, _ := strings.Cut(name, ".")
	if windowsReserved[strings.ToLower(strings.TrimRight(base, " "))] {
		return fmt.Errorf("%w: %q is a device name on Windows", ErrNotPortable, name)
	}
	return nil
}
