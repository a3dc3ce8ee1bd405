// Package transport owns ferry's wire protocol over QUIC: the client that
// makes a server look like a local store (it implements cas.Store and
// cas.Heads), the server side that serves a cas.DB to many clients and
// namespaces at once, TLS certificate pinning, and bearer tokens.
//
// # Connection
//
// QUIC (RFC 9000) with TLS 1.3, ALPN "ferry/1". The server presents a
// certificate (self-signed by default); clients pin the SHA-256 of its DER
// encoding. Session tickets are off, so there is no resumption and no 0-RTT:
// nothing a client sends can be replayed.
//
// Every exchange is one client-initiated bidirectional stream. The first
// byte of a stream names its kind:
//
//	0x01 hello     authenticate; must be the connection's first stream
//	0x02 request   one request message, one response message
//	0x03 put       blob frames up, one response message after a durable write
//	0x04 get       one request message (refs), blob frames down
//	0x05 subscribe one request message (roots), event messages down until closed
//
// The server serves no other stream until hello succeeds; a connection
// whose first stream is not a hello, or whose hello fails, is closed with
// application error 0x1 (auth) after an error response.
//
// # Messages
//
//	message = length(4, big endian) body
//
// body is one CBOR map with small integer keys (the structs in wire.go),
// in the core deterministic encoding, at most MaxMessage bytes. Decoders
// refuse unknown keys, duplicate keys, indefinite lengths and tags. A
// response carries either its result fields or an error: {code, message,
// current (for ECONFLICT), missing (for ENOTFOUND on a commit)}. Codes are
// the strings of RELIABILITY.md: EINVALPATH, EHASH, ETOOBIG, ECONFLICT,
// ENOTFOUND, EAUTH, EPERM, EQUOTA, EFULL (the server's disk is below its
// free-space mark), EUNAVAIL, EPROTO, EINTERNAL.
//
// # Blob frames
//
//	frame = ref(32) flags(1) rawLen(4, BE) storedLen(4, BE) payload(storedLen)
//
// payload is the blob's stored form (flags bit 0: zstd of the raw bytes;
// otherwise the raw bytes), so a blob is compressed once, by its writer.
// rawLen and storedLen are at most MaxBlobSize (16 MiB) and are checked
// before any payload byte is read or any buffer allocated. A receiver
// decodes every frame and checks that the raw bytes hash to ref before it
// stores or uses it (EHASH otherwise). On get streams, a blob that is
// absent (or not the namespace's) is a frame with storedLen 0xFFFFFFFF and
// no payload.
//
// A put stream is frames until FIN. The server stores each verified frame,
// and after FIN makes them durable and answers {stored, dedup}. A bad frame
// ends the stream with an error response; frames before it are stored (they
// were whole and verified) but nothing refers to them until a commit does.
//
// # Commits
//
// swap-head(root, old, new) moves a root's head by compare-and-swap. The
// server first checks the commit: new is a version the namespace owns, and
// every tree, file list and chunk it adds over old is present in the
// namespace (walking only the subtrees whose refs differ from old's), with
// the length each file object gives every chunk equal to the stored
// chunk's (EINVALPATH otherwise: a version that checks clean must
// restore). The
// trees pass the strict decoders of package index, so a name like "../x" is
// refused (EINVALPATH). Missing refs are listed in the ENOTFOUND error.
package transport
