// Package gc owns history retention and garbage collection: which
// versions a root keeps (Policy, applied by forget), and the collection
// (Collect: Mark, then cas.DB.Sweep) that reclaims blobs no kept version
// or share needs, without ever racing a push. Collect's comment gives the
// argument for why a concurrent push cannot lose a chunk.
package gc
