package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"regexp"
	"strings"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/quic-go/quic-go"
)

// Errors a client sees.
var (
	// ErrAuth: the token is wrong, revoked, or not for this namespace.
	ErrAuth = errors.New("not authenticated")
	// ErrPermission: the token may not do this.
	ErrPermission = errors.New("permission denied")
	// ErrFingerprint: the server's certificate is not the pinned one.
	ErrFingerprint = errors.New("server certificate fingerprint mismatch")
	// ErrUnavailable: the server cannot accept writes now.
	ErrUnavailable = errors.New("server unavailable")
)

// Wire error codes (RELIABILITY.md's vocabulary).
const (
	codeInvalidPath = "EINVALPATH"
	codeHash        = "EHASH"
	codeTooBig      = "ETOOBIG"
	codeConflict    = "ECONFLICT"
	codeNotFound    = "ENOTFOUND"
	codeAuth        = "EAUTH"
	codePerm        = "EPERM"
	codeQuota       = "EQUOTA"
	codeFull        = "EFULL"
	codeUnavailable = "EUNAVAIL"
	codeProtocol    = "EPROTO"
	codeInternal    = "EINTERNAL"
)

// RemoteError is an error the server sent. errors.Is matches it against
// the sentinel of its code (cas.ErrNotFound for ENOTFOUND, and so on).
type RemoteError struct {
	Code    string
	Msg     string
	Missing []cas.Ref // for ENOTFOUND on a commit
}

func (e *RemoteError) Error() string {
	if e.Code == codeFull {
		return "server storage is full: " + strings.TrimPrefix(e.Msg, cas.ErrFull.Error()+": ")
	}
	if len(e.Missing) > 0 {
		return fmt.Sprintf("server: %s: %s (%d missing, first %s)", e.Code, e.Msg, len(e.Missing), e.Missing[0].Short())
	}
	return fmt.Sprintf("server: %s: %s", e.Code, e.Msg)
}

// Is maps codes to the errors callers test.
func (e *RemoteError) Is(target error) bool {
	switch e.Code {
	case codeNotFound:
		return target == cas.ErrNotFound
	case codeQuota:
		return target == cas.ErrQuota
	case codeFull:
		return target == cas.ErrFull
	case codeHash:
		return target == cas.ErrCorrupt
	case codeTooBig:
		return target == cas.ErrTooBig || target == index.ErrTooBig
	case codeConflict:
		return target == cas.ErrStale
	case codeInvalidPath:
		return target == index.ErrInvalidPath || target == index.ErrMalformed || target == cas.ErrInvalidName
	case codeAuth:
		return target == ErrAuth
	case codePerm:
		return target == ErrPermission
	case codeUnavailable:
		return target == ErrUnavailable
	case codeProtocol:
		return target == ErrProtocol
	}
	return false
}

// toWire maps an error to its wire form: the one place errors become
// codes. The message is what the client may see (clientMessage); the
// server logs the error itself.
func toWire(err error) *WireError {
	if err == nil {
		return nil
	}
	w := &WireError{Code: codeInternal}
	defer func() { w.Msg = clientMessage(w.Code, err) }()
	var stale *cas.StaleError
	var missing *missingError
	switch {
	case errors.As(err, &stale):
		w.Code = codeConflict
		if !stale.Current.IsZero() {
			w.Current = append([]byte(nil), stale.Current[:]...)
		}
	case errors.As(err, &missing):
		w.Code = codeNotFound
		w.Missing = refsToWire(missing.refs)
	case errors.Is(err, cas.ErrNotFound):
		w.Code = codeNotFound
	case errors.Is(err, cas.ErrQuota):
		w.Code = codeQuota
	case errors.Is(err, cas.ErrFull):
		w.Code = codeFull
	case errors.Is(err, cas.ErrCorrupt):
		w.Code = codeHash
	case errors.Is(err, cas.ErrTooBig), errors.Is(err, index.ErrTooBig):
		w.Code = codeTooBig
	case errors.Is(err, index.ErrInvalidPath), errors.Is(err, index.ErrMalformed), errors.Is(err, cas.ErrInvalidName):
		w.Code = codeInvalidPath
	case errors.Is(err, ErrAuth):
		w.Code = codeAuth
	case errors.Is(err, ErrPermission):
		w.Code = codePerm
	case errors.Is(err, cas.ErrFailed), errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, cas.ErrClusterStale), errors.Is(err, cas.ErrMetaUnavailable), errors.Is(err, cas.ErrGCBusy):
		w.Code = codeUnavailable
	case errors.Is(err, ErrProtocol):
		w.Code = codeProtocol
	}
	return w
}

// fromWire turns a wire error back into an error; root and old give a
// conflict its context.
func fromWire(w *WireError, root string, old cas.Ref) error {
	if w == nil {
		return nil
	}
	if w.Code == codeConflict {
		cur, _ := optRef(w.Current)
		return &cas.StaleError{Root: root, Old: old, Current: cur}
	}
	e := &RemoteError{Code: w.Code, Msg: w.Msg}
	for _, b := range w.Missing {
		if r, err := refFromWire(b); err == nil {
			e.Missing = append(e.Missing, r)
		}
	}
	return e
}

// missingError lists what a commit lacks.
type missingError struct{ refs []cas.Ref }

func (e *missingError) Error() string {
	return fmt.Sprintf("the commit references %d blobs the namespace does not have (first %s)", len(e.refs), e.refs[0].Short())
}

// Messages for errors whose text is the server's business.
var genericMsg = map[string]string{
	codeInternal:    "internal server error (the server's log has the detail)",
	codeUnavailable: "the server cannot serve this now (the server's log has the detail)",
	codeFull:        cas.ErrFull.Error(),
	codeHash:        "the server's copy failed verification (the server's log has the detail)",
}

// absPath matches an absolute path of two or more components.
var absPath = regexp.MustCompile(`(?:/[^\s/:"'()]+){2,}/?`)

// clientMessage is the text a client gets for err: never the server's
// file paths or internals (RELIABILITY D3). An error from the operating
// system (a path, a syscall) or an internal one gets its code's fixed
// message; any other has absolute paths cut out.
func clientMessage(code string, err error) string {
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	if errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &se) || code == codeInternal || errors.Is(err, cas.ErrFailed) {
		if m, ok := genericMsg[code]; ok {
			return m
		}
		return genericMsg[codeInternal]
	}
	return absPath.ReplaceAllString(err.Error(), "<path>")
}

// ErrUnreachable: the server did not answer (nothing listens, the network
// is down, the name does not resolve). A folder's offline commands go on
// without it.
var ErrUnreachable = errors.New("server unreachable")

// unreachable reports a dial error that says nothing answered, as opposed
// to an answer that refused (a wrong certificate, a TLS alert).
func unreachable(err error) bool {
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	var ne net.Error
	var dns *net.DNSError
	return errors.As(err, &idle) || errors.As(err, &hs) || errors.As(err, &dns) || errors.As(err, &ne) ||
		errors.Is(err, context.DeadlineExceeded)
}
