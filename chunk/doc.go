// Package chunk owns content-defined chunking: it cuts a byte stream into
// chunks whose boundaries depend on the content (a Rabin fingerprint over a
// 64-byte window, from github.com/restic/chunker), and names each chunk by its
// BLAKE3-256 sum.
//
// Every writer to one namespace must cut the same way, or equal content
// would be stored twice and deltas would not line up. Params therefore travel
// with a store (its config holds them), never with a client.
//
// The package is a leaf: it imports nothing of ferry, so it can be tested and
// benchmarked against the plain restic/chunker + BLAKE3 loop it wraps.
package chunk
