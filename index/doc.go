// Package index owns the objects that give chunks meaning (files, trees,
// versions), their canonical encoding, the name rule, diffs of two trees,
// and the naming of versions (head~N, tags, ref prefixes, times). It is
// pure: no OS, no network; it reads objects through cas.Getter.
//
// # Encoding (format 1)
//
// Every object is one CBOR data item in the core deterministic encoding
// (RFC 8949 §4.2.1: shortest integers, definite lengths, sorted map keys),
// an array whose first two members are the object type and the format:
//
//	file    = [1, 1, size, chunks, parts]
//	chunks  = [* [ref, length]]            ; the file's bytes in order
//	parts   = [* [ref, size]]              ; or: child file objects in order
//	tree    = [2, 1, [* entry]]            ; entries sorted by name bytes
//	entry   = [name, kind, mode, mtime, size, ref, target]
//	version = [3, 1, {1: root, 2: [* parent], 3: time, 4: device,
//	                  5: message, 6: [files, dirs, symlinks, bytes]}]
//
// ref is a byte string of 32 bytes (a cas.Ref), or of 0 bytes where an entry
// has none (symlinks). kind is 1 file, 2 dir, 3 symlink; mode holds the
// permission bits (at most 0o7777); mtime and time are Unix nanoseconds;
// a dir's size is the total of the file sizes below it, a symlink's the
// length of its target. A file object has chunks or parts, never both: a
// file of more than MaxChunksPerNode chunks is split into parts of that
// many chunks each, recursively, so no object grows without bound.
// Versions use a map so later formats can add keys; format 1 decoders
// refuse unknown ones.
//
// Decoders are strict: they re-encode what they decoded and refuse input
// that is not byte-identical (so one content has exactly one ref), and they
// enforce the name rule (ValidName), sorted unique entries, and the limits
// below. The golden files in testdata/ freeze the format.
package index
