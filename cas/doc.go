// Package cas owns content-addressed storage: the Ref that names every blob
// (the BLAKE3-256 of its bytes), the small interfaces stores offer, and DB,
// the one implementation on disk, which also keeps the named pointers
// (heads, history, tags) that give blobs meaning.
//
// A blob is any chunk of file data or encoded object; the store does not
// know which. Every Put hashes what it is given and refuses a mismatch
// (ErrCorrupt); every Get re-hashes what it read and reports a mismatch
// rather than return wrong bytes.
//
// DB is the only package in ferry that imports Pebble. Its key layout and
// pack file format are specified in layout.go. cas/castest holds the
// conformance suite every Store implementation must pass.
package cas
