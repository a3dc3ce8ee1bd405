package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/chunk"
)

// ErrOffline: the command needs the server, which did not answer. Wraps
// transport.ErrUnreachable.
var ErrOffline = errors.New("offline")

// offlineRemote stands in for a server that did not answer: the folder's
// cache serves what it holds, and everything else fails with the dial's
// error.
type offlineRemote struct {
	err    error
	params chunk.Params
}

func (o *offlineRemote) fail() error { return cas.Errorf(ErrOffline, "%w", o.err) }

func (o *offlineRemote) Get(context.Context, cas.Ref) ([]byte, error)   { return nil, o.fail() }
func (o *offlineRemote) Has(context.Context, []cas.Ref) ([]bool, error) { return nil, o.fail() }
func (o *offlineRemote) Put(context.Context, cas.Ref, []byte) error     { return o.fail() }
func (o *offlineRemote) Flush(context.Context) error                    { return o.fail() }
func (o *offlineRemote) List(context.Context, func(cas.Ref) error) error {
	return o.fail()
}
func (o *offlineRemote) Delete(context.Context, []cas.Ref) error       { return o.fail() }
func (o *offlineRemote) Head(context.Context, string) (cas.Ref, error) { return cas.Ref{}, o.fail() }
func (o *offlineRemote) SwapHead(context.Context, string, cas.Ref, cas.Ref) error {
	return o.fail()
}
func (o *offlineRemote) History(context.Context, string) ([]cas.HistoryEntry, error) {
	return nil, o.fail()
}
func (o *offlineRemote) Roots(context.Context) ([]string, error) { return nil, o.fail() }
func (o *offlineRemote) SetTag(context.Context, string, string, cas.Ref) error {
	return o.fail()
}
func (o *offlineRemote) Tags(context.Context, string) (map[string]cas.Ref, error) {
	return nil, o.fail()
}
func (o *offlineRemote) DropHistory(context.Context, string, []uint64) error { return o.fail() }
func (o *offlineRemote) Params() chunk.Params                                { return o.params }
func (o *offlineRemote) Close() error                                        { return nil }

// offlineRemote makes the session's stand-in for an unreachable server,
// from the chunk params the folder kept; a folder that never reached its
// server has none, and then the dial's error stands.
func (s *session) offlineRemote(dialErr error) (Remote, error) {
	var p chunk.Params
	b := s.f.Params()
	if b == nil || json.Unmarshal(b, &p) != nil || p.Validate() != nil {
		return nil, dialErr
	}
	base, _ := s.f.Base()
	what := "it has no version yet"
	if !base.IsZero() {
		what = "its base version is " + base.Short()
	}
	s.warn(fmt.Sprintf("%v; showing what this folder knows (%s), not the server's head", dialErr, what))
	return &offlineRemote{err: dialErr, params: p}, nil
}

// offline reports whether the session's server did not answer.
func (s *session) offline() bool {
	_, ok := s.remote.(*offlineRemote)
	return ok
}

// keepParams records the remote's chunk params in the folder, for the
// day the server cannot be reached.
func (s *session) keepParams(p chunk.Params) {
	if p.Validate() != nil {
		return
	}
	b, err := json.Marshal(p)
	if err != nil || bytes.Equal(b, s.f.Params()) {
		return
	}
	if err := s.f.SetParams(b); err != nil {
		s.opts.Logger.Warn("could not keep the chunk params", "err", err)
	}
}

// warn records a warning for the result, and passes it to Options.Warn.
func (s *session) warn(msg string) {
	s.warnings = append(s.warnings, msg)
	if s.opts.Warn != nil {
		s.opts.Warn(msg)
	}
}
