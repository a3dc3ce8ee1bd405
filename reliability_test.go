package ferry_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// catalogue is the shape of §2 of the shared RELIABILITY.md: each letter
// and how many rows it has. It changes only when the catalogue does.
var catalogue = []struct {
	letter string
	rows   int
}{{"A", 12}, {"B", 9}, {"C", 11}, {"D", 10}, {"E", 5}, {"F", 8}}

var (
	rowID     = regexp.MustCompile(`^[A-F][0-9]+$`)
	testRef   = regexp.MustCompile(`^([a-z][a-z0-9_/]*)\.((?:Test|Fuzz)[A-Za-z0-9_]*)$`)
	countLine = regexp.MustCompile(`(?m)^covered (\d+), partial (\d+), open (\d+)$`)
)

// TestReliabilityCatalogue keeps docs/RELIABILITY.md honest. The doc says
// which tests cover each catalogue row. A test that is renamed or deleted
// would silently leave a row claiming coverage it no longer has, so every
// test the doc names must exist.
func TestReliabilityCatalogue(t *testing.T) {
	const doc = "docs/RELIABILITY.md"
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range catalogue {
		for i := 1; i <= c.rows; i++ {
			want = append(want, fmt.Sprint(c.letter, i))
		}
	}

	type row struct {
		id, status, notes string
		tests             []string
		line              int
	}
	var rows []row
	for n, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !rowID.MatchString(cells[0]) {
			continue // the header, or another table
		}
		if len(cells) != 5 {
			t.Errorf("%s:%d: row %s has %d cells, want 5 (id, fault, status, tests, notes); a '|' inside a cell splits it", doc, n+1, cells[0], len(cells))
			continue
		}
		r := row{id: cells[0], status: cells[2], notes: cells[4], line: n + 1}
		if cells[3] != "" {
			r.tests = strings.Split(cells[3], ", ")
		}
		rows = append(rows, r)
	}

	var got []string
	for _, r := range rows {
		got = append(got, r.id)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s lists rows\n%s\nwant the catalogue's %d, in order:\n%s", doc, strings.Join(got, " "), len(want), strings.Join(want, " "))
	}

	counts := map[string]int{}
	files := map[string]string{} // package dir -> its test files, joined
	for _, r := range rows {
		where := fmt.Sprintf("%s:%d: row %s", doc, r.line, r.id)
		counts[r.status]++
		switch r.status {
		case "covered":
		case "partial":
			if r.notes == "" {
				t.Errorf("%s is partial but its notes do not say what is missing", where)
			}
		case "open":
			if r.notes == "" {
				t.Errorf("%s is open but its notes do not say why", where)
			}
			if len(r.tests) > 0 {
				t.Errorf("%s is open but names tests %v: it is partial, or they do not cover it", where, r.tests)
			}
		default:
			t.Errorf("%s has status %q, want covered, partial or open", where, r.status)
		}
		if r.status != "open" && len(r.tests) == 0 {
			t.Errorf("%s is %s but names no test", where, r.status)
		}
		for _, ref := range r.tests {
			m := testRef.FindStringSubmatch(ref)
			if m == nil {
				t.Errorf("%s: %q is not package.TestName (package relative to the module root, ferry for the root)", where, ref)
				continue
			}
			pkg, name := m[1], m[2]
			dir := filepath.FromSlash(pkg)
			if pkg == "ferry" {
				dir = "."
			} else if !filepath.IsLocal(dir) || filepath.Clean(dir) != dir {
				t.Errorf("%s: %s: package path %q is not a clean path inside the module", where, ref, pkg)
				continue
			}
			src, ok := files[dir]
			if !ok {
				src, err = testSources(dir)
				if err != nil {
					t.Errorf("%s: %s: %v", where, ref, err)
					continue
				}
				files[dir] = src
			}
			decl := regexp.MustCompile(`(?m)^func ` + regexp.QuoteMeta(name) + `\(`)
			if !decl.MatchString(src) {
				t.Errorf("%s names %s, but no *_test.go file in %s declares func %s", where, ref, dir, name)
			}
		}
	}

	m := countLine.FindAllStringSubmatch(string(b), -1)
	if len(m) != 1 {
		t.Fatalf("%s has %d lines \"covered N, partial M, open K\", want one", doc, len(m))
	}
	for i, status := range []string{"covered", "partial", "open"} {
		if n, _ := strconv.Atoi(m[0][i+1]); n != counts[status] {
			t.Errorf("%s: the count line says %s %d, the table has %d", doc, status, n, counts[status])
		}
	}
}

// testSources returns the contents of dir's *_test.go files, joined. It
// reads them as text rather than parsing them, so that a test file being
// edited (and for the moment not valid Go) does not fail this test.
func testSources(dir string) (string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return "", err
	}
	if len(paths) == 0 {
		return "", fmt.Errorf("package directory %s has no *_test.go files (is the path relative to the module root?)", dir)
	}
	var all strings.Builder
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		all.Write(b)
		all.WriteByte('\n')
	}
	return all.String(), nil
}
