package cas

// FlushMemtable writes Pebble's memtable out to an sstable, so that a
// test can damage what is on disk.
func (db *DB) FlushMemtable() error { return db.pdb.Flush() }
