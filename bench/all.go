package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteLatest writes dir/latest.md: every report of one `ferry bench all`
// run, in order, under one heading with the date and machine.
func WriteLatest(dir string, reps []*Report, note string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# ferry benchmarks: latest run\n\n%s, on %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), Machine())
	if note != "" {
		b.WriteString(note + "\n\n")
	}
	b.WriteString("Every figure is the median of the runs shown; ratios are ferry / peer measured in the same run (below 1: ferry faster).\n\n")
	for _, r := range reps {
		// Each report's own title becomes a section.
		md := r.Markdown()
		b.WriteString("#" + md + "\n")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "latest.md"), []byte(b.String()), 0o644)
}
