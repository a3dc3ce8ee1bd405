package bench

import (
	"encoding/json"
	"errors"
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
	fmt.Fprintf(&b, "# ferry benchmarks\n\nGathered %s, on %s; each section gives the date of its own run.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), Machine())
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

// AllReports are the reports latest.md shows, in its order: those
// `ferry bench all` writes, and scale-1m, the 1M-file curve kept from a
// separate `ferry bench scale --files 1000000` run (about 15 minutes).
var AllReports = []string{"compare", "wan", "scale", "scale-1m", "watch", "gc"}

// Gather reads the saved reports of dir (those that exist), for
// WriteLatest when the workloads ran one by one.
func Gather(dir string) ([]*Report, error) {
	var out []*Report
	for _, name := range AllReports {
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s.json: %w", name, err)
		}
		out = append(out, &r)
	}
	return out, nil
}
