package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// statusLines splits a --json command's stdout into its status lines and
// the final object.
func statusLines(t *testing.T, out string) (status []statusLine, verbose []verboseLine, last map[string]any) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, l := range lines {
		var probe struct {
			Type string `json:"message_type"`
		}
		if err := json.Unmarshal([]byte(l), &probe); err != nil {
			t.Fatalf("line %d is not JSON: %q", i, l)
		}
		switch {
		case i == len(lines)-1:
			json.Unmarshal([]byte(l), &last)
		case probe.Type == "status":
			var s statusLine
			json.Unmarshal([]byte(l), &s)
			status = append(status, s)
		case probe.Type == "verbose_status":
			var v verboseLine
			json.Unmarshal([]byte(l), &v)
			verbose = append(verbose, v)
		default:
			t.Fatalf("line %d has message_type %q before the summary: %q", i, probe.Type, l)
		}
	}
	return status, verbose, last
}

// TestProgressOutput: --json prints restic's status lines (percent_done,
// totals, bytes and files done, elapsed and remaining seconds) before the
// summary; -v lists each file moved (verbose_status with --json); a
// restore announces its total before it writes; --progress draws the bar
// on a stderr that is not a terminal, in IEC units, and --no-progress
// hides it.
func TestProgressOutput(t *testing.T) {
	tmp := t.TempDir()
	a, b, store := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "s")
	var total int64
	for _, n := range []string{"one.bin", "two.bin", "sub/three.bin"} {
		total += int64(len(randomFile(t, filepath.Join(a, n), 3<<20)))
	}
	if out, err := ferryRun(t, nil, "init", a, "--remote", store); err != nil {
		t.Fatal(out)
	}
	fast := []string{"FERRY_PROGRESS_FPS=1000000"}
	out, err := ferryRun(t, fast, "--json", "push", a)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	status, _, last := statusLines(t, out)
	if last["message_type"] != "summary" || len(status) == 0 {
		t.Fatalf("push --json: %d status lines, last %v", len(status), last)
	}
	for _, s := range status {
		if s.PercentDone < 0 || s.PercentDone > 1 || s.BytesDone > s.TotalBytes || s.TotalBytes > total || s.Phase != "scan" {
			t.Errorf("status line %+v (the push reads %d bytes)", s, total)
		}
	}
	if end := status[len(status)-1]; end.TotalBytes != total {
		t.Errorf("the last status line's total is %d bytes, want %d", end.TotalBytes, total)
	}

	// -v: a line for each file read, new or modified.
	randomFile(t, filepath.Join(a, "two.bin"), 1<<20)
	randomFile(t, filepath.Join(a, "four.bin"), 1<<10)
	out, err = ferryRun(t, nil, "-v", "push", a)
	if err != nil || !strings.Contains(out, "modified two.bin") || !strings.Contains(out, "new      four.bin") || strings.Contains(out, "one.bin") {
		t.Errorf("push -v: %v\n%s", err, out)
	}

	// A pull: verbose_status lines with --json -v, and totals announced
	// before the writes.
	if out, err := ferryRun(t, nil, "init", b, "--remote", store); err != nil {
		t.Fatal(out)
	}
	out, err = ferryRun(t, fast, "--json", "-v", "pull", b)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	status, verbose, last := statusLines(t, out)
	if last["message_type"] != "summary" || len(verbose) != 4 {
		t.Fatalf("pull --json -v: %d verbose lines, last %v\n%s", len(verbose), last, out)
	}
	for _, v := range verbose {
		if v.Action != "written" || v.Item == "" {
			t.Errorf("verbose line %+v", v)
		}
	}
	want := total - 3<<20 + 1<<20 + 1<<10
	for _, s := range status {
		if s.Phase == "download" && s.TotalBytes != want {
			t.Errorf("pull status %+v: total %d, want %d", s, s.TotalBytes, want)
		}
	}

	// check --read-data: the bytes it reads, sized before the first.
	out, err = ferryRun(t, fast, "--json", "check", "--remote", store, "--read-data")
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	status, _, last = statusLines(t, out)
	if len(status) == 0 || last["ok"] != true {
		t.Fatalf("check --json: %d status lines, last %v", len(status), last)
	}
	for _, s := range status {
		if s.Phase != "check" || s.TotalBytes < total || s.BytesDone > s.TotalBytes {
			t.Errorf("check status %+v", s)
		}
	}

	// The bar, forced onto a pipe.
	os.WriteFile(filepath.Join(a, "one.bin"), make([]byte, 5<<20), 0o644)
	cmd := ferryCmd(fast, "--progress", "push", a)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if e := stderr.String(); !strings.Contains(e, "MiB") || !strings.Contains(e, "%") {
		t.Errorf("push --progress drew no bar in IEC units on stderr: %q", e)
	}
	os.WriteFile(filepath.Join(a, "one.bin"), make([]byte, 6<<20), 0o644)
	cmd = ferryCmd(nil, "--progress", "--no-progress", "push", a)
	stderr.Reset()
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() != 0 {
		t.Errorf("push --no-progress wrote to stderr (%v): %q", err, stderr.String())
	}
}
