package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// waitStopped waits until the child process stops (true) or exits
// (false), with waitid(WSTOPPED|WEXITED|WNOWAIT): the kernel says when,
// and the state stays for cmd.Wait to collect.
func waitStopped(t *testing.T, pid int) bool {
	t.Helper()
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("waitid %d: %v", pid, err)
		}
		const cldStopped = 5 // si_code of a stopped child (<signal.h>)
		return info.Code == cldStopped
	}
}

// TestStoppedPusher (E4): a push frozen with SIGSTOP (a laptop asleep, a
// stalled VM) while a collection with no grace sweeps everything it had
// sent, then resumed with SIGCONT, either commits complete data or fails
// cleanly; either way the store checks clean, no version names swept
// data, and a rerun (when needed) commits. Frozen mid-upload and just
// before the commit.
func TestStoppedPusher(t *testing.T) {
	for _, point := range []string{"client-blob-sent=2", "client-before-commit=1"} {
		t.Run(strings.Split(point, "=")[0], func(t *testing.T) {
			tmp := t.TempDir()
			data := filepath.Join(tmp, "data")
			srv := startServeArgs(t, data, "127.0.0.1:0", nil, "--gc-every", "0")
			env := []string{"FERRY_TOKEN=" + srv.token("ns", "write"), "FERRY_FINGERPRINT=" + srv.fp}
			admin := []string{"FERRY_TOKEN=" + readAdminToken(t, data), "FERRY_FINGERPRINT=" + srv.fp}
			a := filepath.Join(tmp, "a")
			if out, err := ferryRun(t, env, "init", a, "--remote", srv.url("ns"), "--root", "r"); err != nil {
				t.Fatalf("init: %v\n%s", err, out)
			}
			randomFile(t, filepath.Join(a, "first.bin"), 1<<20)
			if out, err := ferryRun(t, env, "push", a); err != nil {
				t.Fatalf("push: %v\n%s", err, out)
			}
			randomFile(t, filepath.Join(a, "second.bin"), 6<<20)

			cmd := ferryCmd(append(env, "FERRY_FAILPOINT="+point+":stop"), "push", a)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if !waitStopped(t, cmd.Process.Pid) {
				t.Fatalf("the push ended before its failpoint:\n%s", out.String())
			}
			gcOut, err := ferryRun(t, admin, "gc", "--data", data, "--grace", "0s")
			if err != nil {
				t.Fatalf("gc while the pusher is frozen: %v\n%s", err, gcOut)
			}
			cmd.Process.Signal(syscall.SIGCONT)
			err = cmd.Wait()
			var ee *exec.ExitError
			switch {
			case err == nil:
				t.Logf("resumed push committed:\n%s", out.String())
			case errors.As(err, &ee) && ee.ExitCode() == exitError:
				t.Logf("resumed push failed cleanly: %s", strings.TrimSpace(out.String()))
				if o, err := ferryRun(t, env, "push", a); err != nil {
					t.Fatalf("rerun after the failed push: %v\n%s", err, o)
				}
			default:
				t.Fatalf("resumed push: %v\n%s", err, out.String())
			}
			if o, err := ferryRun(t, admin, "check", "--read-data", "--remote", "quic://"+srv.addr); err != nil {
				t.Fatalf("check: %v\n%s", err, o)
			}
			target := filepath.Join(tmp, "restored")
			if o, err := ferryRun(t, env, "restore", a, "--version", "head", "--to", target); err != nil {
				t.Fatalf("restore: %v\n%s", err, o)
			}
			if treeDigest(target) != treeDigest(a) {
				t.Fatal("the head does not restore to the folder that was pushed")
			}
		})
	}
}
