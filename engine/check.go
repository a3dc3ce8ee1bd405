package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/transport"
)

// CheckOptions choose what check reads.
type CheckOptions struct {
	Options
	ReadData         bool
	SubsetN, SubsetM int
	// For repair: watch names blobs whose paths to record even when they
	// are sound, and walked receives the walk.
	watch  cas.RefSet
	walked **walk
}

// Damaged is one damaged or missing blob and what it breaks.
type Damaged struct {
	Ref      string   `json:"ref"`
	Error    string   `json:"error"`
	Versions []string `json:"versions,omitempty"` // namespace/root@version
	Paths    []string `json:"paths,omitempty"`
	// where maps each path to the versions that hold it there (repair
	// reports by path).
	where map[string][]string
}

// CheckResult is check's report. OK is false when anything is damaged.
type CheckResult struct {
	Store      string    `json:"store"`
	Blobs      int       `json:"blobs"`
	BlobsRead  int       `json:"blobs_read"`
	BytesRead  int64     `json:"bytes_read"`
	Versions   int       `json:"versions"`
	Objects    int       `json:"objects_checked"`
	Damaged    []Damaged `json:"damaged"`
	OK         bool      `json:"ok"`
	DurationMS int64     `json:"duration_ms"`
}

// ErrDamaged is returned (with the result) when check finds damage.
var ErrDamaged = errors.New("the store is damaged")

// Check verifies a store: a store directory (opened here; it must not be
// open elsewhere), or a server (quic://HOST:PORT[/NAMESPACE]) that checks
// itself while it serves: with a server admin token the whole store, with
// a namespace's token that namespace.
func Check(ctx context.Context, store string, o CheckOptions) (*CheckResult, error) {
	if o.SubsetM < 0 || (o.SubsetM > 0 && (o.SubsetN < 1 || o.SubsetN > o.SubsetM)) {
		return nil, fmt.Errorf("check: subset %d/%d: want N/M with 1 <= N <= M", o.SubsetN, o.SubsetM)
	}
	if !IsLocal(store) {
		return checkServer(ctx, store, o)
	}
	abs, err := filepath.Abs(store)
	if err != nil {
		return nil, err
	}
	db, err := cas.Open(abs, cas.Options{})
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", abs, err)
	}
	defer db.Close()
	res, err := CheckDB(ctx, db, "", o)
	if res != nil {
		res.Store = abs
	}
	return res, err
}

func checkServer(ctx context.Context, url string, o CheckOptions) (*CheckResult, error) {
	c, err := dialAdmin(ctx, ServerRef{URL: url, Credentials: o.Credentials})
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", url, err)
	}
	defer c.Close()
	rep, err := c.CheckStore(ctx, transport.MaintenanceRequest{ReadData: o.ReadData, SubsetN: o.SubsetN, SubsetM: o.SubsetM})
	if len(rep) == 0 {
		if err == nil {
			err = errors.New("the server sent no report")
		}
		return nil, fmt.Errorf("check %s: %w", url, err)
	}
	var res CheckResult
	if jerr := json.Unmarshal(rep, &res); jerr != nil {
		return nil, fmt.Errorf("check %s: report: %w", url, jerr)
	}
	res.Store = url
	if !res.OK {
		return &res, ErrDamaged
	}
	return &res, nil
}

// CheckDB verifies an open store, while others may write to it: every
// blob record (and with ReadData every blob's bytes), and that every kept
// version (history and tags) resolves completely: its trees, file lists
// and chunks are all present and decode. Damage is reported with the
// versions and paths it affects. With namespace set, only that
// namespace's versions are walked, and ReadData re-hashes the chunks they
// reach instead of the whole store.
func CheckDB(ctx context.Context, db *cas.DB, namespace string, o CheckOptions) (*CheckResult, error) {
	start := time.Now()
	res := &CheckResult{Store: db.Dir(), Damaged: []Damaged{}}
	bad := map[cas.Ref]*Damaged{}
	spaces := []string{namespace}
	if namespace == "" {
		co := cas.CheckOptions{ReadData: o.ReadData, SubsetN: o.SubsetN, SubsetM: o.SubsetM}
		if o.Progress != nil {
			co.Progress = func(total, read int64) { o.Progress(Progress{Phase: "check", TotalBytes: total, Bytes: read}) }
		}
		st, err := db.Check(ctx, co, func(d cas.Damage) {
			bad[d.Ref] = &Damaged{Ref: d.Ref.String(), Error: d.Err}
		})
		if err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
		res.Blobs, res.BlobsRead, res.BytesRead = st.Blobs, st.BlobsRead, st.BytesRead
		if spaces, err = db.Namespaces(ctx); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
	}
	w := &walk{bad: bad, clean: cas.RefSet{}, readChunks: namespace != "" && o.ReadData, res: res, watch: o.watch, heads: map[string]bool{}}
	for _, name := range spaces {
		ns, err := db.Namespace(name)
		if err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
		if err := w.namespace(ctx, ns); err != nil {
			return nil, fmt.Errorf("check %s: %w", name, err)
		}
	}
	if o.walked != nil {
		*o.walked = w
	}
	for _, d := range bad {
		res.Damaged = append(res.Damaged, *d)
	}
	slices.SortFunc(res.Damaged, func(a, b Damaged) int { return strings.Compare(a.Ref, b.Ref) })
	res.OK = len(res.Damaged) == 0
	res.DurationMS = durationMS(start)
	if !res.OK {
		return res, ErrDamaged
	}
	return res, nil
}
