package engine

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/transport"
)

// ConfigKey names a folder setting that 'ferry config' reads and writes.
type ConfigKey string

const (
	ConfigRemote      ConfigKey = "remote"
	ConfigRoot        ConfigKey = "root"
	ConfigToken       ConfigKey = "token"
	ConfigFingerprint ConfigKey = "fingerprint"
	ConfigMode        ConfigKey = "mode"
)

// ConfigKeys are the keys, in the order 'ferry config' lists them.
var ConfigKeys = []ConfigKey{ConfigRemote, ConfigRoot, ConfigToken, ConfigFingerprint, ConfigMode}

// ConfigValue is one setting. A token is never shown: Value is its id
// (what 'ferry token list' calls it) and whether one is kept.
type ConfigValue struct {
	Key   ConfigKey `json:"key"`
	Value string    `json:"value"`
	// Note says what a change did beyond the value.
	Note string `json:"note,omitempty"`
}

// ConfigGet reads a folder's settings: one key, or all of them.
func ConfigGet(dir string, key ConfigKey) ([]ConfigValue, error) {
	f, err := openFolder(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys := ConfigKeys
	if key != "" {
		if err := checkKey(key); err != nil {
			return nil, err
		}
		keys = []ConfigKey{key}
	}
	out := make([]ConfigValue, 0, len(keys))
	for _, k := range keys {
		v := ConfigValue{Key: k}
		switch k {
		case ConfigRemote:
			v.Value = f.Config.Remote
		case ConfigRoot:
			v.Value = f.Config.Root
		case ConfigFingerprint:
			v.Value = f.Config.Fingerprint
		case ConfigMode:
			v.Value = string(ModeBoth)
			if f.Config.Mode != "" {
				v.Value = f.Config.Mode
			}
		case ConfigToken:
			if t := f.Token(); t != "" {
				v.Value = "id " + transport.TokenID(t)
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// ConfigSet changes one setting, after checking the new value. A new
// remote or root starts the folder's history afresh there: its base is
// cleared, so the next sync merges with whatever that root holds rather
// than take it for the old one's.
func ConfigSet(ctx context.Context, dir string, key ConfigKey, value string) (*ConfigValue, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	f, err := openFolder(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &ConfigValue{Key: key, Value: value}
	rebase := false
	switch key {
	case ConfigRemote:
		if IsLocal(value) {
			abs, err := filepath.Abs(value)
			if err != nil {
				return nil, err
			}
			if err := StoreOutsideFolders(abs); err != nil {
				return nil, fmt.Errorf("config remote: %w", err)
			}
			r, err := OpenRemote(ctx, abs, "", RemoteOptions{})
			if err != nil {
				return nil, fmt.Errorf("config remote: %w", err)
			}
			r.Close()
			value, res.Value = abs, abs
		} else if _, _, err := transport.ParseURL(value); err != nil {
			return nil, fmt.Errorf("config remote: %w", err)
		}
		rebase = value != f.Config.Remote
		if rebase && !IsLocal(value) {
			// Another server has another certificate: pin it on first use.
			f.Config.Fingerprint = ""
		}
		f.Config.Remote, f.Config.Namespace = value, ""
	case ConfigRoot:
		if err := cas.ValidName(value); err != nil {
			return nil, fmt.Errorf("config root: %w", err)
		}
		// Even the same root starts afresh: that is the way back for a
		// folder whose root was deleted (ErrRootGone).
		rebase = true
		f.Config.Root = value
	case ConfigFingerprint:
		fp, err := transport.NormalizeFingerprint(value)
		if err != nil {
			return nil, fmt.Errorf("config fingerprint: %w", err)
		}
		f.Config.Fingerprint, res.Value = fp, fp
	case ConfigMode:
		m, err := ParseMode(value)
		if err != nil {
			return nil, fmt.Errorf("config mode: %w", err)
		}
		f.Config.Mode, res.Value = string(m), string(m)
		if m == ModeBoth {
			f.Config.Mode = ""
		}
	case ConfigToken:
		if err := transport.ValidToken(value); err != nil {
			return nil, fmt.Errorf("config token: %w", err)
		}
		if err := f.SetToken(value); err != nil {
			return nil, err
		}
		res.Value = "id " + transport.TokenID(value)
		return res, nil
	}
	if err := f.SaveConfig(); err != nil {
		return nil, err
	}
	if rebase {
		if err := f.SetBase(cas.Ref{}); err != nil {
			return nil, err
		}
		res.Note = fmt.Sprintf("the folder's next sync starts afresh with %s's root %q: it merges with what that holds, keeping both sides", f.Config.Remote, f.Config.Root)
	}
	return res, nil
}

func checkKey(k ConfigKey) error {
	for _, x := range ConfigKeys {
		if k == x {
			return nil
		}
	}
	return fmt.Errorf("no setting %q: the settings are remote, root, token, fingerprint and mode", k)
}
