package cas

// FlushMemtable writes Pebble's memtable out to an sstable, so that a
// test can damage what is on disk.
func (db *DB) FlushMemtable() error { return db.meta.(*pebbleMeta).pdb.Flush() }

// ForceHash makes every verification hash bytes with f (a collision
// test), until the returned function restores Sum.
func ForceHash(f func([]byte) Ref) (restore func()) {
	verifyHash = f
	return func() { verifyHash = Sum }
}

// MemTableFor is the memtable size a store at dir would get.
func MemTableFor(dir string) uint64 { return storage{}.memTableFor(dir) }

// KeyFilterReady builds the Pebble Meta's key filter now, unless one is
// in use, and waits for it; it reports whether one is in use then.
func (db *DB) KeyFilterReady() bool {
	m := db.meta.(*pebbleMeta)
	m.mu.Lock()
	if m.filter.Load() == nil {
		m.startBuildLocked()
	}
	m.mu.Unlock()
	m.builds.Wait()
	return m.filter.Load() != nil
}

// KeyFilterRebuild starts a new build while one is in use.
func (db *DB) KeyFilterRebuild() {
	m := db.meta.(*pebbleMeta)
	m.mu.Lock()
	m.startBuildLocked()
	m.mu.Unlock()
}

// KeyFilterWait waits for builds under way.
func (db *DB) KeyFilterWait() { db.meta.(*pebbleMeta).builds.Wait() }
