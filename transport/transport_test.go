package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/cas/castest"
	"github.com/ferry-sync/ferry/index"
	"github.com/quic-go/quic-go"
)

func TestMain(m *testing.M) {
	// Tests run on 127.0.0.1 where the UDP buffer size does not matter.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	os.Exit(m.Run())
}

// testServer is a real server on 127.0.0.1 with a real store.
type testServer struct {
	addr   string
	fp     string
	db     *cas.DB
	srv    *Server
	tokens *Tokens
	admin  string
}

func startServer(t testing.TB) *testServer {
	t.Helper()
	return startServerOpts(t, ServerOptions{})
}

// startServerOpts starts a test server with opts (Version is "test").
// At cleanup it checks no connection used 0-RTT or resumed a TLS session.
func startServerOpts(t testing.TB, opts ServerOptions) *testServer {
	t.Helper()
	dir := t.TempDir()
	db, err := cas.Open(filepath.Join(dir, "store"), cas.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokens(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, fp, err := LoadOrCreateCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Version = "test"
	srv := NewServer(db, tokens, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	admin, _, err := tokens.Create(AllNamespaces, PermAdmin, "test admin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		ln.Close()
		<-done
		db.Close()
		if n := srv.resumed.Load(); n != 0 {
			t.Errorf("%d connections used 0-RTT or resumed a TLS session", n)
		}
	})
	return &testServer{addr: ln.Addr().String(), fp: fp, db: db, srv: srv, tokens: tokens, admin: admin}
}

func (s *testServer) token(t testing.TB, ns string, perm Perm) string {
	t.Helper()
	tok, _, err := s.tokens.Create(ns, perm, "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s *testServer) dial(t testing.TB, ns, token string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), s.addr, ns, ClientOptions{Token: token, Fingerprint: s.fp, Device: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformance runs the store suite against the QUIC client: a remote
// is just another store.
func TestConformance(t *testing.T) {
	s := startServer(t)
	var n atomic.Int32
	castest.RunWith(t, func(t *testing.T) castest.Store {
		ns := fmt.Sprintf("ns%d", n.Add(1))
		return s.dial(t, ns, s.token(t, ns, PermWrite))
	}, func(t *testing.T, st castest.Store, seed string) cas.Ref {
		return commitFile(t, st.(*Client), []byte(seed), true)
	})
}

func TestWrongTokenRefused(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	for _, tc := range []struct{ name, ns, token string }{
		{"missing", "a", ""},
		{"malformed", "a", "hunter2"},
		{"unknown", "a", "ferry_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"other namespace", "b", s.token(t, "a", PermWrite)},
	} {
		_, err := Dial(ctx, s.addr, tc.ns, ClientOptions{Token: tc.token, Fingerprint: s.fp})
		if !errors.Is(err, ErrAuth) {
			t.Errorf("%s token: Dial = %v, want ErrAuth", tc.name, err)
		}
	}
}

func TestFingerprintPinned(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	tok := s.token(t, "a", PermRead)
	wrong := fmt.Sprintf("%064x", 1)
	if _, err := Dial(ctx, s.addr, "a", ClientOptions{Token: tok, Fingerprint: wrong}); !errors.Is(err, ErrFingerprint) {
		t.Errorf("wrong fingerprint: %v, want ErrFingerprint", err)
	}
	if _, err := Dial(ctx, s.addr, "a", ClientOptions{Token: tok}); !errors.Is(err, ErrFingerprint) {
		t.Errorf("no pin and no first-use callback: %v, want ErrFingerprint", err)
	}
	var seen string
	c, err := Dial(ctx, s.addr, "a", ClientOptions{Token: tok, FirstUse: func(fp string) error { seen = fp; return nil }})
	if err != nil || seen != s.fp {
		t.Fatalf("first use: %v, saw %q want %q", err, seen, s.fp)
	}
	c.Close()
}

func TestPermissions(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	w := s.dial(t, "a", s.token(t, "a", PermWrite))
	data := []byte("written")
	if err := w.Put(ctx, cas.Sum(data), data); err != nil {
		t.Fatal(err)
	}
	if err := w.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(data)); err == nil {
		t.Fatal("a head moved to a blob that is not a version")
	}
	r := s.dial(t, "a", s.token(t, "a", PermRead))
	if err := r.Put(ctx, cas.Sum([]byte("x")), []byte("x")); err == nil {
		if err = r.Flush(ctx); !errors.Is(err, ErrPermission) {
			t.Errorf("read token put: %v, want ErrPermission", err)
		}
	}
	if got, err := r.Get(ctx, cas.Sum(data)); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read token get: %v", err)
	}
	if _, err := r.Clients(ctx); !errors.Is(err, ErrPermission) {
		t.Errorf("read token admin view: %v, want ErrPermission", err)
	}
}

// TestNamespaceIsolation is catalogue rows C5 and C6: B knows A's chunk
// hash but cannot have, get or commit it until B uploads the bytes.
func TestNamespaceIsolation(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	a := s.dial(t, "alice", s.token(t, "alice", PermWrite))
	b := s.dial(t, "bob", s.token(t, "bob", PermWrite))
	secret := bytes.Repeat([]byte("alice's secret "), 1000)
	ref := cas.Sum(secret)
	if err := a.Put(ctx, ref, secret); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if has, err := b.Has(ctx, []cas.Ref{ref}); err != nil || has[0] {
		t.Errorf("bob has alice's chunk: %v %v", has, err)
	}
	_, errOther := b.Get(ctx, ref)
	_, errAbsent := b.Get(ctx, cas.Sum([]byte("nobody")))
	if !errors.Is(errOther, cas.ErrNotFound) || !errors.Is(errAbsent, cas.ErrNotFound) {
		t.Errorf("bob get: %v / %v", errOther, errAbsent)
	}
	// A version of bob's that uses alice's chunk is refused.
	v := commitFile(t, b, secret, false)
	err := b.SwapHead(ctx, "r", cas.Ref{}, v)
	var re *RemoteError
	if !errors.Is(err, cas.ErrNotFound) || !errors.As(err, &re) || len(re.Missing) != 1 || re.Missing[0] != ref {
		t.Errorf("bob's commit of alice's chunk = %v; want ENOTFOUND naming the chunk", err)
	}
	// After bob uploads the bytes himself, it works.
	if err := b.Put(ctx, ref, secret); err != nil {
		t.Fatal(err)
	}
	if err := b.SwapHead(ctx, "r", cas.Ref{}, v); err != nil {
		t.Errorf("bob's commit after his upload: %v", err)
	}
}

// commitFile puts a file object, a tree and a version for content (and the
// chunk itself when withChunk) and returns the version's ref.
func commitFile(t *testing.T, c *Client, content []byte, withChunk bool) cas.Ref {
	t.Helper()
	ctx := context.Background()
	ref := cas.Sum(content)
	if withChunk {
		if err := c.Put(ctx, ref, content); err != nil {
			t.Fatal(err)
		}
	}
	fo, _ := index.FileObjects([]index.ChunkRef{{Ref: ref, Len: uint32(len(content))}})
	tr := index.EncodeTree(&index.Tree{Entries: []index.Entry{{Name: "f", Kind: index.KindFile, Mode: 0o644, Size: int64(len(content)), Ref: cas.Sum(fo)}}})
	ver := index.EncodeVersion(&index.Version{Root: cas.Sum(tr), Time: time.Unix(1, 0)})
	for _, b := range [][]byte{fo, tr, ver} {
		if err := c.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	return cas.Sum(ver)
}

// TestCommitChecks: a version whose tree names "../x" is refused with
// EINVALPATH and the head does not move.
func TestCommitChecks(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := s.dial(t, "a", s.token(t, "a", PermWrite))
	fo, _ := index.FileObjects(nil)
	evil := index.EncodeTree(&index.Tree{Entries: []index.Entry{{Name: "../x", Kind: index.KindFile, Mode: 0o644, Ref: cas.Sum(fo)}}})
	ver := index.EncodeVersion(&index.Version{Root: cas.Sum(evil), Time: time.Unix(1, 0)})
	for _, b := range [][]byte{fo, evil, ver} {
		if err := c.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	err := c.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(ver))
	if !errors.Is(err, index.ErrInvalidPath) {
		t.Errorf("commit of a tree with ../x = %v, want EINVALPATH", err)
	}
	if _, err := c.Head(ctx, "r"); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("head after a refused commit: %v", err)
	}
	good := commitFile(t, c, []byte("good"), true)
	if err := c.SwapHead(ctx, "r", cas.Ref{}, good); err != nil {
		t.Fatal(err)
	}
}

// TestCommitChecksChunkLengths (C8): a file object whose chunk lengths
// do not add up to what is stored (here: it gives its one chunk a length
// one byte short, and a size to match) cannot be restored, so its commit
// is refused and names the path.
func TestCommitChecksChunkLengths(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := s.dial(t, "a", s.token(t, "a", PermWrite))
	data := []byte("twenty bytes of data")
	fo, _ := index.FileObjects([]index.ChunkRef{{Ref: cas.Sum(data), Len: uint32(len(data) - 1)}})
	tree := index.EncodeTree(&index.Tree{Entries: []index.Entry{{Name: "short.txt", Kind: index.KindFile, Mode: 0o644, Size: int64(len(data) - 1), Ref: cas.Sum(fo)}}})
	ver := index.EncodeVersion(&index.Version{Root: cas.Sum(tree), Time: time.Unix(1, 0)})
	for _, b := range [][]byte{data, fo, tree, ver} {
		if err := c.Put(ctx, cas.Sum(b), b); err != nil {
			t.Fatal(err)
		}
	}
	err := c.SwapHead(ctx, "r", cas.Ref{}, cas.Sum(ver))
	if !errors.Is(err, index.ErrMalformed) || !strings.Contains(err.Error(), "short.txt") || !strings.Contains(err.Error(), "19 bytes") {
		t.Fatalf("commit of a file whose chunk length is wrong = %v, want a refusal naming short.txt", err)
	}
	if _, err := c.Head(ctx, "r"); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("head after a refused commit: %v", err)
	}
}

// rawStream opens an authenticated connection and one raw stream of kind.
func rawStream(t *testing.T, s *testServer, ns string, kind byte) (*quic.Conn, *quic.Stream) {
	t.Helper()
	ctx := context.Background()
	c := s.dial(t, ns, s.token(t, ns, PermWrite))
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte{kind}); err != nil {
		t.Fatal(err)
	}
	return c.conn, st
}

// TestBadFrames is catalogue rows C1, C3, C4 and D8: each bad put stream
// gets a typed error, nothing of the bad frame is stored, and the server
// goes on serving.
func TestBadFrames(t *testing.T) {
	s := startServer(t)
	data := bytes.Repeat([]byte{7}, 1000)
	good := AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum(data), RawLen: 1000, StoredLen: 1000})
	tests := []struct {
		name  string
		bytes []byte
		code  string
	}{
		{"wrong hash", append(AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum([]byte("other")), RawLen: 1000, StoredLen: 1000}), data...), codeHash},
		{"too big", AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum(data), RawLen: 1 << 30, StoredLen: 1 << 30}), codeTooBig},
		{"truncated", append(good, data[:500]...), codeProtocol},
		{"short header", good[:20], codeProtocol},
		{"unknown flags", append(AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum(data), Flags: 0x80, RawLen: 1000, StoredLen: 1000}), data...), codeProtocol},
		{"length mismatch", append(AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum(data), RawLen: 999, StoredLen: 1000}), data...), codeProtocol},
		{"not-found frame", AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum(data), StoredLen: notFoundLen}), codeProtocol},
		// The body runs 10 bytes past its declared length: the declared
		// length is read, and does not hash to the ref (C4).
		{"longer body", append(AppendFrameHeader(nil, FrameHeader{Ref: cas.Sum(data), RawLen: 990, StoredLen: 990}), data...), codeHash},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := fmt.Sprintf("bad%d", i)
			_, st := rawStream(t, s, ns, kindPut)
			start := time.Now()
			st.Write(tt.bytes)
			st.Close()
			var resp Response
			if err := readMessage(st, &resp); err != nil {
				t.Fatalf("no error response: %v", err)
			}
			if resp.Err == nil || resp.Err.Code != tt.code {
				t.Errorf("response %+v, want code %s", resp.Err, tt.code)
			}
			if tt.name == "too big" && time.Since(start) > 5*time.Second {
				t.Error("the refusal of a 1 GiB frame waited for its body")
			}
			n, _ := s.db.Namespace(ns)
			if has, _ := n.Has(context.Background(), []cas.Ref{cas.Sum(data)}); has[0] {
				t.Error("the blob of a refused frame is stored")
			}
		})
	}
	// The server still serves.
	c := s.dial(t, "after", s.token(t, "after", PermWrite))
	if err := c.Put(context.Background(), cas.Sum(data), data); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Errorf("put after bad streams: %v", err)
	}
}

// TestMalformedMessages: unknown stream kinds, unknown ops and garbage
// messages get typed errors; the connection stays usable.
func TestMalformedMessages(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := s.dial(t, "m", s.token(t, "m", PermWrite))
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"unknown kind", []byte{0x7f}},
		{"garbage request", append([]byte{kindRequest, 0, 0, 0, 3}, 0xff, 0xff, 0xff)},
		{"oversized request", []byte{kindRequest, 0xff, 0xff, 0xff, 0xff}},
		{"unknown op", func() []byte {
			var b bytes.Buffer
			b.WriteByte(kindRequest)
			writeMessage(&b, Request{Op: "explode"})
			return b.Bytes()
		}()},
	} {
		st, err := c.conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Write(tc.send)
		st.Close()
		var resp Response
		err = readMessage(st, &resp)
		if err == nil && resp.Err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := c.Roots(ctx); err != nil {
		t.Errorf("the connection broke: %v", err)
	}
}

// TestUnauthenticatedStreamsRefused: a connection whose first stream is
// not a hello is closed; no request is served.
func TestUnauthenticatedStreamsRefused(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	conn, err := quic.DialAddr(ctx, s.addr, clientTLS(s.fp, nil), QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	st, _ := conn.OpenStreamSync(ctx)
	var b bytes.Buffer
	b.WriteByte(kindRequest)
	writeMessage(&b, Request{Op: opRoots})
	st.Write(b.Bytes())
	st.Close()
	var resp Response
	err = readMessage(st, &resp)
	if err == nil && resp.Err == nil {
		t.Errorf("a request before hello was answered: %+v", resp)
	}
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Error("the connection was not closed")
	}
}

func TestSubscribeAndAdmin(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	w := s.dial(t, "a", s.token(t, "a", PermWrite))
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, _, err := w.Subscribe(sctx, []string{"r"})
	if err != nil {
		t.Fatal(err)
	}
	v := commitFile(t, w, []byte("event"), true)
	if err := w.SwapHead(ctx, "r", cas.Ref{}, v); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		if e.Root != "r" || e.Ref != v {
			t.Errorf("event %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	admin := s.dial(t, "", s.admin)
	clients, err := admin.Clients(ctx)
	if err != nil || len(clients) < 2 {
		t.Errorf("clients = %v, %v", clients, err)
	}
	roots, err := admin.AdminRoots(ctx)
	if err != nil || len(roots) != 1 || roots[0].Root != "r" || roots[0].Versions != 1 {
		t.Errorf("roots = %+v, %v", roots, err)
	}
	hist, err := admin.AdminHistory(ctx, "a", "r")
	if err != nil || len(hist) != 1 || hist[0].Ref != v {
		t.Errorf("history = %+v, %v", hist, err)
	}
	tok, info, err := admin.CreateToken(ctx, "b", PermRead, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	b := s.dial(t, "b", tok)
	if err := admin.RevokeToken(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Error("the revoked token's connection stayed open")
	}
	if _, err := Dial(ctx, s.addr, "b", ClientOptions{Token: tok, Fingerprint: s.fp}); !errors.Is(err, ErrAuth) {
		t.Errorf("dial with a revoked token: %v", err)
	}
}

// TestResumeSendsOnlyWhatIsMissing: after an upload that stored half of
// the blobs, a second client asking Has sends only the rest.
func TestResumeSendsOnlyWhatIsMissing(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	tok := s.token(t, "a", PermWrite)
	var blobs [][]byte
	for i := range 20 {
		b := make([]byte, 256<<10)
		rand.NewChaCha8([32]byte{byte(i)}).Read(b)
		blobs = append(blobs, b)
	}
	first := s.dial(t, "a", tok)
	for _, b := range blobs[:10] {
		first.Put(ctx, cas.Sum(b), b)
	}
	if err := first.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	second := s.dial(t, "a", tok)
	for _, b := range blobs {
		has, err := second.Has(ctx, []cas.Ref{cas.Sum(b)})
		if err != nil {
			t.Fatal(err)
		}
		if !has[0] {
			second.Put(ctx, cas.Sum(b), b)
		}
	}
	if err := second.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := second.BlobsSent.Load(); n != 10 {
		t.Errorf("the resumed upload sent %d blobs, want 10", n)
	}
}

// TestConcurrentClients: many clients push at once through one server.
func TestConcurrentClients(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		ns := fmt.Sprintf("c%d", i)
		c := s.dial(t, ns, s.token(t, ns, PermWrite))
		wg.Go(func() {
			for j := range 20 {
				b := fmt.Appendf(nil, "client %d blob %d %s", i, j, bytes.Repeat([]byte("x"), j*1000))
				if err := c.Put(ctx, cas.Sum(b), b); err != nil {
					errs <- err
					return
				}
			}
			if err := c.Flush(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

var _ = io.EOF

// TestManyRequestsOneConnection: streams are released, so a connection
// can make far more requests than the server's concurrent stream limit.
func TestManyRequestsOneConnection(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := s.dial(t, "a", s.token(t, "a", PermWrite))
	for i := range 500 {
		if _, err := c.Roots(ctx); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if _, err := c.Get(ctx, cas.Sum([]byte("absent"))); !errors.Is(err, cas.ErrNotFound) {
			t.Fatalf("get %d: %v", i, err)
		}
	}
}
