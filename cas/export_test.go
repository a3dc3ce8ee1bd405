package cas

// FlushMemtable writes Pebble's memtable out to an sstable, so that a
// test can damage what is on disk.
func (db *DB) FlushMemtable() error { return db.pdb.Flush() }

// ForceHash makes every verification hash bytes with f (a collision
// test), until the returned function restores Sum.
func ForceHash(f func([]byte) Ref) (restore func()) {
	verifyHash = f
	return func() { verifyHash = Sum }
}
