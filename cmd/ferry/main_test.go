package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// ferryMain runs the CLI as a process would.
func ferryMain() { os.Exit(mainCode()) }

func TestMain(m *testing.M) {
	// The kill tests re-execute this binary as ferry itself.
	if os.Getenv("FERRY_TEST_AS_FERRY") == "1" {
		ferryMain()
	}
	testscript.Main(m, map[string]func(){"ferry": ferryMain})
}

// TestScripts runs the CLI scenarios in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Cmds:                scriptCmds,
	})
}

// runCLI runs one command line in process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	tmp := t.TempDir()
	folder, store := filepath.Join(tmp, "f"), filepath.Join(tmp, "s")
	if code, _, errs := runCLI(t, "init", folder, "--remote", store); code != exitOK {
		t.Fatalf("init: %d %s", code, errs)
	}
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"push", folder}, exitOK, ""},
		{[]string{"push", "--no-such-flag"}, exitUsage, "unknown flag"},
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
		{[]string{"init", filepath.Join(tmp, "g")}, exitUsage, "--remote is required"},
		{[]string{"push", tmp}, exitNoFolder, "not a ferry folder"},
		{[]string{"push", filepath.Join(folder, "sub")}, exitNoFolder, "not a ferry folder"},
		{[]string{"check", "--remote", filepath.Join(tmp, "nostore")}, exitNoFolder, "no ferry store here"},
		{[]string{"restore", folder, "--to", tmp}, exitUsage, "version"},
		{[]string{"log", folder, "../outside"}, exitError, "outside the folder"},
		{[]string{"check", "--remote", store, "--read-data-subset", "x"}, exitUsage, "N/M"},
		{[]string{"check", "--remote", store, "--read-data-subset", "3/2"}, exitUsage, "N/M"},
		{[]string{"token", "create", "--namespace", "n", "--perm", "bogus", "--data", tmp}, exitUsage, "want read, write or admin"},
		{[]string{"forget", folder, "--keep-within", "bogus"}, exitUsage, "duration"},
		{[]string{"share", folder, "a", "--ttl", "forever"}, exitUsage, "--ttl"},
		{[]string{"init", filepath.Join(tmp, "h"), "--remote", store, "--mode", "x"}, exitUsage, "receive-only"},
	}
	for _, tt := range tests {
		code, _, errs := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.msg) {
			t.Errorf("ferry %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tt.args, " "), code, errs, tt.code, tt.msg)
		}
	}
	// --json errors are JSON on stderr.
	code, _, errs := runCLI(t, "--json", "push", tmp)
	var e struct {
		MessageType string `json:"message_type"`
		Code        int    `json:"code"`
	}
	if code != exitNoFolder || json.Unmarshal([]byte(errs), &e) != nil || e.MessageType != "exit_error" || e.Code != exitNoFolder {
		t.Errorf("--json error: exit %d, stderr %q", code, errs)
	}
}

// TestPushSummaryJSON: push and pull print the summary fields the issue
// names, with --json.
func TestPushSummaryJSON(t *testing.T) {
	tmp := t.TempDir()
	a, b, store := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "s")
	runCLI(t, "init", a, "--remote", store, "--root", "r")
	os.WriteFile(filepath.Join(a, "f"), []byte("some content"), 0o644)
	for _, step := range []struct{ args []string }{{[]string{"--json", "push", a}}, {[]string{"init", b, "--remote", store, "--root", "r"}}, {[]string{"--json", "pull", b}}} {
		code, out, errs := runCLI(t, step.args...)
		if code != 0 {
			t.Fatalf("%v: %d %s", step.args, code, errs)
		}
		if step.args[0] != "--json" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v printed %q: %v", step.args, out, err)
		}
		want := []string{"version", "files_changed", "duration_ms", "bytes_scanned"}
		if step.args[1] == "push" {
			want = append(want, "chunks_sent", "bytes_sent")
		} else {
			want = append(want, "chunks_fetched", "bytes_fetched")
		}
		for _, k := range want {
			if _, ok := m[k]; !ok {
				t.Errorf("%v: JSON lacks %q: %s", step.args, k, out)
			}
		}
	}
}

// ferryCmd runs this test binary as ferry, as a real process.
func ferryCmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	// No --json status lines before the summaries tests read, unless a
	// test asks (TestJSONStatusLines).
	cmd.Env = append(append(os.Environ(), "FERRY_TEST_AS_FERRY=1", "FERRY_IDLE_TIMEOUT=3s", "FERRY_PROGRESS_FPS=0"), env...)
	return cmd
}

// TestKillDuringPull: kill -9 in the middle of writing a file leaves no
// partial file under its final name; a rerun completes and removes the
// temporary file.
func TestKillDuringPull(t *testing.T) {
	tmp := t.TempDir()
	a, b, store := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "s")
	big := make([]byte, 24<<20)
	rand.Read(big)
	runCLI(t, "init", a, "--remote", store, "--root", "r")
	os.WriteFile(filepath.Join(a, "big.bin"), big, 0o644)
	os.WriteFile(filepath.Join(a, "small.txt"), []byte("small"), 0o644)
	if code, _, errs := runCLI(t, "push", a); code != 0 {
		t.Fatal(errs)
	}
	runCLI(t, "init", b, "--remote", store, "--root", "r")

	// The 5th chunk written kills the process, mid-file.
	cmd := ferryCmd([]string{"FERRY_FAILPOINT=restore-chunk-written=5"}, "pull", b)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("pull was not killed: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(b, "big.bin")); err == nil && !bytes.Equal(got, big) {
		t.Fatalf("a partial big.bin (%d bytes) is under its final name", len(got))
	}
	temps, _ := filepath.Glob(filepath.Join(b, ".ferry-tmp-*"))
	if len(temps) == 0 {
		t.Fatal("no temporary file: the kill did not happen mid-file")
	}

	if out, err := ferryCmd(nil, "pull", b).CombinedOutput(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(b, "big.bin")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("after the rerun big.bin is wrong: %v", err)
	}
	if temps, _ := filepath.Glob(filepath.Join(b, ".ferry-tmp-*")); len(temps) != 0 {
		t.Errorf("temporary files left after the rerun: %v", temps)
	}
}

// TestExitCodeConflictsAndInterrupt: exit 3 when a push makes conflict
// copies, 130 when the command is interrupted.
func TestExitCodeConflictsAndInterrupt(t *testing.T) {
	tmp := t.TempDir()
	a, b, store := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "s")
	steps := [][]string{{"init", a, "--remote", store}, {"push", a}, {"init", b, "--remote", store}, {"pull", b}}
	os.MkdirAll(a, 0o755)
	os.WriteFile(filepath.Join(a, "f"), []byte("v1"), 0o644)
	for _, s := range steps {
		if code, _, errs := runCLI(t, s...); code != exitOK {
			t.Fatalf("%v: exit %d %s", s, code, errs)
		}
	}
	os.WriteFile(filepath.Join(a, "f"), []byte("v2 from a"), 0o644)
	if code, _, errs := runCLI(t, "push", a); code != exitOK {
		t.Fatalf("push a: exit %d %s", code, errs)
	}
	os.WriteFile(filepath.Join(b, "f"), []byte("v2 from b"), 0o644)
	if code, out, errs := runCLI(t, "push", b); code != exitConflicts {
		t.Errorf("push of a conflicting edit: exit %d, want %d\n%s%s", code, exitConflicts, out, errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	os.WriteFile(filepath.Join(a, "g"), []byte("new"), 0o644)
	if code := run(ctx, []string{"push", a}, &out, &errb); code != exitCancelled {
		t.Errorf("interrupted push: exit %d, want %d\n%s", code, exitCancelled, errb.String())
	}
}

// TestJSONContract: with --json, every object printed carries a
// message_type (summary for a result, verbose_status for each element of
// a listing), and an error is JSON even when the bad argument comes
// before --json.
func TestJSONContract(t *testing.T) {
	tmp := t.TempDir()
	folder, store := filepath.Join(tmp, "f"), filepath.Join(tmp, "s")
	os.MkdirAll(folder, 0o755)
	os.WriteFile(filepath.Join(folder, "a"), []byte("a"), 0o644)
	for _, step := range [][]string{{"init", folder, "--remote", store}, {"push", folder}, {"tag", folder, "v1"}} {
		if code, _, errs := runCLI(t, append([]string{"--json"}, step...)...); code != exitOK {
			t.Fatalf("%v: exit %d %s", step, code, errs)
		}
	}
	for _, args := range [][]string{
		{"status", folder}, {"log", folder}, {"ls", folder}, {"diff", folder}, {"tag", folder},
		{"check", "--remote", store}, {"forget", folder, "--keep-last", "1", "--dry-run"}, {"conflicts", folder},
	} {
		code, out, errs := runCLI(t, append([]string{"--json"}, args...)...)
		if code != exitOK {
			t.Fatalf("%v: exit %d %s", args, code, errs)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var v any
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatalf("%v printed a line that is not JSON: %q", args, line)
			}
			var objs []any
			switch x := v.(type) {
			case map[string]any:
				objs = []any{x}
			case []any:
				objs = x
			}
			for _, o := range objs {
				m, ok := o.(map[string]any)
				if !ok {
					continue
				}
				switch m["message_type"] {
				case "summary", "verbose_status", "status", "error":
				default:
					t.Errorf("%v: an object without a known message_type: %s", args, line)
				}
			}
		}
	}
	for _, args := range [][]string{{"--bogus", "--json", "push", folder}, {"push", "--nope", "--json"}, {"ls", "--json", folder, "nosuch"}} {
		code, _, errs := runCLI(t, args...)
		var e struct {
			MessageType string `json:"message_type"`
			Code        int    `json:"code"`
		}
		if err := json.Unmarshal([]byte(errs), &e); err != nil || e.MessageType != "exit_error" || e.Code != code || code == exitOK {
			t.Errorf("%v: exit %d, stderr %q; want one exit_error object", args, code, errs)
		}
	}
}

// TestVersion: 'ferry version --json' names the version and the Go
// release, and the user's --help does not list the developers' bench.
func TestVersion(t *testing.T) {
	code, out, errs := runCLI(t, "--json", "version")
	var v versionInfo
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go") {
		t.Fatalf("version --json: exit %d, %q %q", code, out, errs)
	}
	_, help, _ := runCLI(t, "--help")
	if strings.Contains(help, "bench") || !strings.Contains(help, "version") {
		t.Errorf("--help:\n%s", help)
	}
}

// TestAtTimeFromLog: @TIME takes a time exactly as log prints it (to the
// millisecond, with its zone, the store's clock) and finds the version on
// that line, though versions come within one second of each other.
func TestAtTimeFromLog(t *testing.T) {
	tmp := t.TempDir()
	folder, store := filepath.Join(tmp, "f"), filepath.Join(tmp, "s")
	os.MkdirAll(folder, 0o755)
	if code, _, errs := runCLI(t, "init", folder, "--remote", store); code != exitOK {
		t.Fatal(errs)
	}
	for i := range 3 {
		os.WriteFile(filepath.Join(folder, "f"), []byte(strings.Repeat("v", i+1)), 0o644)
		if code, _, errs := runCLI(t, "push", folder); code != exitOK {
			t.Fatal(errs)
		}
	}
	_, out, _ := runCLI(t, "log", folder)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("log:\n%s", out)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		// ref8 DATE TIME ZONE device ...
		if len(f) < 4 || !strings.Contains(f[2], ".") {
			t.Fatalf("log line without a millisecond time and zone: %q", l)
		}
		at := "@" + f[1] + " " + f[2] + " " + f[3]
		code, got, errs := runCLI(t, "--json", "ls", folder, "--version", at, "f")
		if code != exitOK {
			t.Fatalf("ls --version %q: exit %d %s", at, code, errs)
		}
		_, want, _ := runCLI(t, "--json", "ls", folder, "--version", f[0], "f")
		if got != want {
			t.Errorf("@TIME %q from the line %q found another version:\n%s\nwant\n%s", at, l, got, want)
		}
	}
}

// TestFlagsFromEnv: every flag has an environment twin, FERRY_<FLAG>;
// the command line wins; a bad value names the variable.
func TestFlagsFromEnv(t *testing.T) {
	tmp := t.TempDir()
	folder, store := filepath.Join(tmp, "f"), filepath.Join(tmp, "s")
	os.MkdirAll(folder, 0o755)
	os.WriteFile(filepath.Join(folder, "a"), []byte("a"), 0o644)
	t.Setenv("FERRY_REMOTE", store)
	t.Setenv("FERRY_ROOT", "fromenv")
	if code, _, errs := runCLI(t, "init", folder); code != exitOK {
		t.Fatalf("init with FERRY_REMOTE and FERRY_ROOT: exit %d %s", code, errs)
	}
	t.Setenv("FERRY_JSON", "true")
	code, out, errs := runCLI(t, "status", folder)
	if code != exitOK || !strings.Contains(out, `"root":"fromenv"`) {
		t.Fatalf("status with FERRY_JSON: exit %d %q %s", code, out, errs)
	}
	code, out, _ = runCLI(t, "--json=false", "status", folder)
	if code != exitOK || strings.Contains(out, `"message_type"`) {
		t.Errorf("--json=false did not win over FERRY_JSON: %q", out)
	}
	t.Setenv("FERRY_STREAMS", "many")
	if code, _, errs := runCLI(t, "status", folder); code != exitUsage || !strings.Contains(errs, "FERRY_STREAMS") {
		t.Errorf("FERRY_STREAMS=many: exit %d %s", code, errs)
	}
}

// TestGenMan: 'ferry gen man DIR' writes a page per command, the hidden
// bench left out.
func TestGenMan(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man")
	if code, _, errs := runCLI(t, "gen", "man", dir); code != exitOK {
		t.Fatalf("gen man: exit %d %s", code, errs)
	}
	for _, page := range []string{"ferry.1", "ferry-push.1", "ferry-restore.1", "ferry-admin-policy.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !bytes.Contains(b, []byte(".TH \"FERRY\"")) {
			t.Errorf("%s: %v\n%.200s", page, err, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ferry-bench.1")); err == nil {
		t.Error("the hidden bench command got a man page")
	}
}
