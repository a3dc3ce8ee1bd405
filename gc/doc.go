// Package gc owns history retention and garbage collection: which
// versions a root keeps (forget policies), and the mark and sweep that
// reclaims blobs no kept version needs, without ever racing a push.
//
// It is filled by the history issue; until then no version is forgotten
// and nothing is collected.
package gc
