package index

import (
	"errors"
	"testing"
)

// TestFoldedNamesReserved (A9, A11): names that are ferry's own where case
// folds, or where HFS+ drops zero-width code points, are refused.
func TestFoldedNamesReserved(t *testing.T) {
	for _, name := range []string{".ferry", ".FERRY", ".Ferry", ".fe\u200crry", "\u200b.ferry", ".ferry-tmp-1", ".FERRY-TMP-x", ".fErRy"} {
		if err := ValidName(name); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidPath", name, err)
		}
	}
	for _, name := range []string{".ferryignore", ".ferryx", "ferry", ".fer ry"} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", name, err)
		}
	}
}

// TestFoldName: the names that collide on a case-folding filesystem share
// a key; others do not.
func TestFoldName(t *testing.T) {
	same := [][2]string{{"README", "readme"}, {"é", "e\u0301"}, {"É", "e\u0301"}, {"Straße", "STRASSE"}, {"a\u200db", "ab"}}
	for _, p := range same {
		if FoldName(p[0]) != FoldName(p[1]) {
			t.Errorf("FoldName(%q) != FoldName(%q)", p[0], p[1])
		}
	}
	for _, p := range [][2]string{{"a", "b"}, {"readme", "readme2"}, {"é", "e"}} {
		if FoldName(p[0]) == FoldName(p[1]) {
			t.Errorf("FoldName(%q) == FoldName(%q)", p[0], p[1])
		}
	}
}

// TestPortableName (A9): the names Windows cannot hold.
func TestPortableName(t *testing.T) {
	bad := []string{"CON", "con", "nul.txt", "COM1", "com1.log", "LPT0", "lpt¹", "a:b", "trailing.", "trailing ", "what?", "a*b", `q"uote`, "a|b", "<x>", "AUX.tar.gz"}
	for _, name := range bad {
		if err := PortableName(name); !errors.Is(err, ErrNotPortable) || !errors.Is(err, ErrInvalidPath) {
			t.Errorf("PortableName(%q) = %v, want ErrNotPortable", name, err)
		}
	}
	for _, name := range []string{"console", "nullify.txt", "com10", "a.b", "README", "é", ".hidden", "CONFIG.SYS"} {
		if err := PortableName(name); err != nil {
			t.Errorf("PortableName(%q) = %v, want nil", name, err)
		}
	}
}
