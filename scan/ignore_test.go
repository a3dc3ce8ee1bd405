package scan

import (
	"bytes"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// FuzzParseIgnore: any ignore file parses or is refused without a panic,
// has no more patterns than lines, and matches paths the same way twice.
func FuzzParseIgnore(f *testing.F) {
	for _, s := range []string{"*.tmp\n# c\n\n!keep.tmp\r\n/build/\n**/x/**\n", "[", "\\", "a/**/b", "!", "/"} {
		f.Add([]byte(s))
	}
	paths := [][]string{{"a.tmp"}, {"build", "x"}, {"d", "x", "y"}, {"keep.tmp"}, {"["}, {""}}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := parseIgnore(data, []string{"sub"})
		if err != nil {
			return
		}
		if len(ps) > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("%d patterns from %d lines", len(ps), bytes.Count(data, []byte("\n"))+1)
		}
		m := gitignore.NewMatcher(ps)
		for _, p := range paths {
			full := append([]string{"sub"}, p...)
			if m.Match(full, false) != m.Match(full, false) {
				t.Fatalf("%q matched differently twice", full)
			}
		}
	})
}
