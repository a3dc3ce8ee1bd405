package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestStats: a write token sees its namespace's usage and quota, roots,
// versions and dedup ratio, with no admin token.
func TestStats(t *testing.T) {
	tmp := t.TempDir()
	srv := startServe(t, filepath.Join(tmp, "data"))
	if code, _, errs := runCLI(t, "admin", "quota", "team", "--set", "100MiB", "--data", srv.data); code != 0 {
		t.Fatalf("quota: %s", errs)
	}
	dir := filepath.Join(tmp, "f")
	env := []string{"FERRY_TOKEN=" + srv.token("team", "write"), "FERRY_FINGERPRINT=" + srv.fp}
	if out, err := ferryRun(t, env, "init", dir, "--remote", srv.url("team"), "--root", "r"); err != nil {
		t.Fatal(out)
	}
	big := randomFile(t, filepath.Join(dir, "big.bin"), 4<<20)
	if out, err := ferryRun(t, nil, "push", dir); err != nil {
		t.Fatal(out)
	}
	copy(big[len(big)-100:], "a hundred bytes changed at the end of the file, so one chunk is new and the rest is shared......")
	os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644)
	pushOut, err := ferryCmd(nil, "--json", "push", dir).Output()
	var push struct {
		Chunks int64 `json:"chunks_sent"`
		Bytes  int64 `json:"bytes_sent"`
	}
	if err != nil || json.Unmarshal(pushOut, &push) != nil {
		t.Fatalf("push: %v\n%s", err, pushOut)
	}
	out, err := ferryCmd(nil, "--json", "stats", dir).Output()
	var st struct {
		Stored       int64   `json:"stored_bytes"`
		Quota        int64   `json:"quota"`
		Roots        int     `json:"roots"`
		Versions     int     `json:"root_versions"`
		HeadBytes    int64   `json:"head_bytes"`
		LogicalBytes int64   `json:"logical_bytes"`
		Dedup        float64 `json:"dedup_ratio"`
	}
	if err != nil || json.Unmarshal(out, &st) != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	if st.Quota != 100<<20 || st.Roots != 1 || st.Versions != 2 || st.HeadBytes != 4<<20 || st.LogicalBytes != 8<<20 {
		t.Errorf("stats %+v", st)
	}
	// Two versions of 4 MiB that share all but the last chunk. The store's
	// polynomial is random, so that chunk's size is too: the bounds follow
	// from what the second push sent (random data does not compress).
	if push.Chunks < 1 || push.Bytes <= 0 || push.Bytes >= 4<<20 {
		t.Fatalf("second push sent %d chunks, %d bytes: want the last chunk and less than the file", push.Chunks, push.Bytes)
	}
	want := int64(4<<20) + push.Bytes
	const slack = 64 << 10 // pack headers and per-blob framing
	if st.Stored < want-slack || st.Stored > want+slack {
		t.Errorf("stats: stored %d bytes, want %d±%d (4 MiB + the %d bytes the edit sent)", st.Stored, want, slack, push.Bytes)
	}
	if r := float64(8<<20) / float64(st.Stored); st.Dedup < r*0.99 || st.Dedup > r*1.01 || st.Dedup <= 1 {
		t.Errorf("stats: dedup %.3f, want %.3f (logical over stored)", st.Dedup, r)
	}
}
