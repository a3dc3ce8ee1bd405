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
