package scan

import "github.com/ferry-sync/ferry/state"

// cachePut records a stat cache entry. A large update is applied in
// pieces, each after a flush of Dest, so that memory stays bounded and
// every applied entry's content is durable at Dest. A scan without a Dest
// records nothing: there is nothing its entries could promise.
func (s *scanner) cachePut(dir, name string, st state.Stat) error {
	return s.record(func(u *state.Update) error { return u.Put(dir, name, st) })
}

// record applies one change to the pending stat cache update: see
// cachePut.
func (s *scanner) record(change func(*state.Update) error) error {
	if s.dst == nil || s.opts.DryRun {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := change(s.update); err != nil {
		return err
	}
	if s.update.Size() < maxCacheUpdate {
		return nil
	}
	if err := s.dst.Flush(s.ctx); err != nil {
		return err
	}
	if err := s.update.Commit(); err != nil {
		return err
	}
	s.update = s.cache.Update()
	return nil
}

// maxCacheUpdate bounds the stat cache changes held in memory.
const maxCacheUpdate = 8 << 20
