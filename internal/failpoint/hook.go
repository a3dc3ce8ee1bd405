package failpoint

import (
	"maps"
	"sync"
	"sync/atomic"
)

// hooks are in-process actions at steps, for deterministic interleaving
// tests: a test pauses a step, runs another operation, then lets it go.
var (
	hooks   atomic.Pointer[map[string]func()]
	hooksMu sync.Mutex
)

// Set makes every Hit(step) in this process call fn, until the returned
// function removes it.
func Set(step string, fn func()) (remove func()) {
	hooksMu.Lock()
	defer hooksMu.Unlock()
	m := map[string]func(){}
	if old := hooks.Load(); old != nil {
		maps.Copy(m, *old)
	}
	m[step] = fn
	hooks.Store(&m)
	return func() {
		hooksMu.Lock()
		defer hooksMu.Unlock()
		m := maps.Clone(*hooks.Load())
		delete(m, step)
		if len(m) == 0 {
			hooks.Store(nil)
			return
		}
		hooks.Store(&m)
	}
}

func runHook(step string) {
	if h := hooks.Load(); h != nil {
		if fn := (*h)[step]; fn != nil {
			fn()
		}
	}
}
