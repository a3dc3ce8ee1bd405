package transport

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
)

// NamespaceSettings are the rules an admin sets for a namespace and the
// server enforces at every commit.
type NamespaceSettings struct {
	// Portable refuses names that Windows cannot hold (index.PortableName:
	// CON, nul.txt, a trailing dot or space, a:b), so that every version
	// restores on every system.
	Portable bool `json:"portable"`
}

// Settings returns a namespace's settings (the zero value when none were
// set).
func (s *Server) Settings(namespace string) (NamespaceSettings, error) {
	var st NamespaceSettings
	kv, err := s.db.KV("settings")
	if err != nil {
		return st, err
	}
	v, err := kv.Get([]byte(namespace))
	if errors.Is(err, cas.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("%w: settings of %s: %v", cas.ErrCorrupt, namespace, err)
	}
	return st, nil
}

// SetSettings replaces a namespace's settings, durably.
func (s *Server) SetSettings(namespace string, st NamespaceSettings) error {
	if err := cas.ValidName(namespace); err != nil {
		return err
	}
	kv, err := s.db.KV("settings")
	if err != nil {
		return err
	}
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	b := kv.Batch()
	if err := b.Set([]byte(namespace), v); err != nil {
		b.Close()
		return err
	}
	return b.Commit(true)
}
