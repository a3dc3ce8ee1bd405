package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestTokenResetAdmin: the server admin token cannot revoke itself, and
// when it is lost, `ferry token reset-admin` on the stopped server's data
// directory makes a new one (refusing while the server runs); with
// --revoke-others the old one stops working.
func TestTokenResetAdmin(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, data)
	old := readAdminToken(t, data)
	code, out, errs := runCLI(t, "--json", "token", "list", "--data", data)
	if code != 0 {
		t.Fatal(errs)
	}
	var toks []struct{ ID, Namespace, Perm string }
	if err := json.Unmarshal([]byte(out), &toks); err != nil || len(toks) != 1 {
		t.Fatalf("token list: %v %s", err, out)
	}
	code, _, errs = runCLI(t, "token", "revoke", "--data", data, toks[0].ID)
	if code == 0 || !strings.Contains(errs, "cannot revoke itself") {
		t.Fatalf("the admin token revoking itself: exit %d, %s", code, errs)
	}
	code, _, errs = runCLI(t, "token", "reset-admin", "--data", data)
	if code == 0 || !strings.Contains(errs, "stop the server first") {
		t.Fatalf("reset-admin with the server running: exit %d, %s", code, errs)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	<-srv.done

	code, out, errs = runCLI(t, "--json", "token", "reset-admin", "--data", data, "--revoke-others")
	if code != 0 {
		t.Fatalf("reset-admin: %s", errs)
	}
	var res struct {
		ID      string   `json:"id"`
		Revoked []string `json:"revoked"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Revoked) != 1 || res.Revoked[0] != toks[0].ID {
		t.Fatalf("reset-admin said %s (%v)", out, err)
	}
	if readAdminToken(t, data) == old {
		t.Fatal("admin.token still holds the old token")
	}
	srv = startServeAt(t, data, "127.0.0.1:0")
	code, out, errs = runCLI(t, "--json", "token", "list", "--data", data)
	if code != 0 || !strings.Contains(out, res.ID) || strings.Contains(out, toks[0].ID) {
		t.Fatalf("token list with the new admin token: exit %d %s %s", code, out, errs)
	}
	env := []string{"FERRY_TOKEN=" + old, "FERRY_FINGERPRINT=" + srv.fp}
	if o, err := ferryRun(t, env, "token", "list", "--server", "quic://"+srv.addr); err == nil || !strings.Contains(o, "not authenticated") {
		t.Fatalf("the revoked admin token still works: %v\n%s", err, o)
	}
}

// TestStaleServeInfo: after a server dies, the serve.json it left does
// not send admin commands to wait out a handshake timeout: they say the
// server is not running.
func TestStaleServeInfo(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, data)
	srv.kill()
	if _, err := os.Stat(filepath.Join(data, "serve.json")); err != nil {
		t.Fatalf("the killed server left no serve.json to test with: %v", err)
	}
	code, _, errs := runCLI(t, "token", "list", "--data", data)
	if code == 0 || !strings.Contains(errs, "the server is not running") {
		t.Fatalf("token list on a stopped server's data: exit %d, %q", code, errs)
	}
}

// TestServeLogFile: --log-format json --log-file writes the server's log
// as JSON lines to the file, not to stderr.
func TestServeLogFile(t *testing.T) {
	tmp := t.TempDir()
	logPath := filepath.Join(tmp, "serve.log")
	srv := startServeArgs(t, filepath.Join(tmp, "data"), "127.0.0.1:0", nil, "--log-format", "json", "--log-file", logPath)
	badFile := filepath.Join(tmp, "bad.token")
	os.WriteFile(badFile, []byte("ferry_"+strings.Repeat("z", 32)), 0o600)
	if code, _, _ := runCLI(t, "--token-file", badFile, "--fingerprint", srv.fp, "token", "list", "--server", "quic://"+srv.addr); code != exitAuth {
		t.Fatalf("a wrong token: exit %d, want %d", code, exitAuth)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	<-srv.done
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	refused := false
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] == nil {
			t.Fatalf("a log line that is not slog JSON: %q", l)
		}
		refused = refused || m["reason"] == "auth"
	}
	if !refused {
		t.Errorf("the log file lacks the refused authentication:\n%s", b)
	}
	if s := srv.logs.String(); strings.Contains(s, "level=") || strings.Contains(s, `"level"`) {
		t.Errorf("log lines went to stderr too:\n%s", s)
	}
	if code, _, errs := runCLI(t, "serve", "--data", filepath.Join(tmp, "d2"), "--log-format", "xml"); code != exitUsage {
		t.Errorf("--log-format xml: exit %d %s", code, errs)
	}
}
