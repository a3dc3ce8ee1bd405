package ferry_test

import (
	"go/build"
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraph makes the architecture executable (docs/ARCHITECTURE.md):
// only cas imports Pebble, only cmd imports cobra, chunk imports nothing of
// ferry, index is pure, and packages import only the layers below them.
func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/ferry-sync/ferry/"
	// allowed[p] lists the ferry packages p may import.
	allowed := map[string][]string{
		"chunk":               {},
		"cas":                 {},
		"cas/castest":         {"cas"},
		"internal/failpoint":  {},
		"internal/atomicfile": {},
		"internal/casefoldfs": {}, // a test filesystem: imported by tests only
		"index":               {"cas"},
		"state":               {"cas", "index", "internal/atomicfile"},
		"scan":                {"cas", "chunk", "index", "state"},
		"restore":             {"cas", "index", "state", "internal/failpoint"},
		"engine":              {"cas", "chunk", "index", "state", "scan", "restore", "transport", "gc", "internal/watch", "internal/failpoint"},
		"internal/watch":      {},
		"bench":               {"transport", "cas", "chunk", "index", "bench/linkem"},
		"bench/linkem":        {}, // the WAN emulator: imported by tests and cmd/linkem
		"cmd/linkem":          {"bench/linkem"},
		"gc":                  {"cas", "index", "internal/failpoint"},
		"cmd/ferry":           {"engine", "state", "bench", "gc", "internal/server"},
		"internal/server":     {"cas", "state", "transport", "engine", "gc", "s3store", "pgmeta"},
		"transport":           {"cas", "chunk", "index", "internal/failpoint", "internal/atomicfile"},
		"s3store":             {},      // object storage for packs: a leaf, wired into cas by its callers
		"pgmeta":              {"cas"}, // a store's records in PostgreSQL: implements cas.Meta
		"internal/s3test":     {},      // starts versitygw for tests: imported by tests only
		"internal/pgtest":     {},      // starts PostgreSQL for tests: imported by tests only
		"":                    {},
	}
	external := map[string][]string{ // third-party imports reserved to one package
		"github.com/cockroachdb/pebble": {"cas"},
		"github.com/spf13/cobra":        {"cmd/ferry"},
		"github.com/quic-go/quic-go":    {"transport"},
		"github.com/aws/aws-sdk-go-v2":  {"s3store"},
		"github.com/jackc/pgx":          {"internal/pgtest", "pgmeta"},
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], "github.com/ferry-sync/ferry"), "/")
		ok, known := allowed[pkg]
		if !known {
			t.Errorf("package %q is not in the import graph of arch_test.go and docs/ARCHITECTURE.md", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if rel, isOurs := strings.CutPrefix(imp, mod); isOurs {
				if !contains(ok, rel) {
					t.Errorf("%s imports %s, which the architecture does not allow", pkg, rel)
				}
				continue
			}
			for prefix, owners := range external {
				if strings.HasPrefix(imp, prefix) && !contains(owners, pkg) {
					t.Errorf("%s imports %s; only %v may", pkg, imp, owners)
				}
			}
		}
	}
	if pkg, err := build.Import(mod+"index", ".", 0); err == nil {
		for _, imp := range pkg.Imports {
			if imp == "os" || imp == "net" || strings.HasPrefix(imp, "net/") {
				t.Errorf("index imports %s; it must stay pure", imp)
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
