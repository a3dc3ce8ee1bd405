// Package failpoint lets crash tests kill a real ferry process at a named
// step. FERRY_FAILPOINT=name=N makes the N-th Hit(name) send SIGKILL to
// the process itself: the same death as a power cut for everything above
// the page cache, at an exact point instead of a random one.
// FERRY_FAILPOINT=name=N:stop sends SIGSTOP instead: the process freezes
// there (a laptop put to sleep, a stalled VM) until the test sends
// SIGCONT. Tests in the same process can instead hang an action on a step
// (Set). Without either, Hit costs two loads.
package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var (
	enabled bool
	name    string
	at      int64
	signal  = syscall.SIGKILL
	hits    atomic.Int64
)

func init() {
	spec := os.Getenv("FERRY_FAILPOINT")
	if spec == "" {
		return
	}
	n, count, ok := strings.Cut(spec, "=")
	if !ok {
		count = "1"
	}
	if c, action, ok := strings.Cut(count, ":"); ok {
		if action != "stop" {
			return
		}
		count, signal = c, syscall.SIGSTOP
	}
	c, err := strconv.ParseInt(count, 10, 64)
	if err != nil || c < 1 {
		return
	}
	enabled, name, at = true, n, c
}

// Hit marks that the step name was reached.
func Hit(step string) {
	runHook(step)
	if !enabled || step != name {
		return
	}
	if hits.Add(1) == at {
		_ = syscall.Kill(os.Getpid(), signal)
		if signal == syscall.SIGKILL {
			select {} // the signal is on its way
		}
	}
}
