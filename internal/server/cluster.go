package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/pgmeta"
	"github.com/ferry-sync/ferry/state"
	"github.com/ferry-sync/ferry/transport"
)

// A cluster is servers that share one metadata database (--meta) and one
// bucket (--store). What they must agree on lives in the database's
// "cluster" KV space: the certificate and key, so that clients pin one
// fingerprint for every server, and the admin token. The first server to
// start makes them; a conditional write settles a race between two first
// starts.

// openMeta connects to the cluster's database.
func openMeta(ctx context.Context, dsn string) (cas.Meta, error) {
	m, err := pgmeta.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("--meta: %w", err)
	}
	return m, nil
}

// shared returns the value of key in the cluster space, making it with
// mk when no server did yet. It reports whether this call made it.
func shared(db *cas.DB, key string, mk func() ([]byte, error)) ([]byte, bool, error) {
	kv, err := db.KV("cluster")
	if err != nil {
		return nil, false, err
	}
	for range 3 {
		v, err := kv.Get([]byte(key))
		if err == nil {
			return v, false, nil
		}
		if !errors.Is(err, cas.ErrNotFound) {
			return nil, false, err
		}
		v, err = mk()
		if err != nil {
			return nil, false, err
		}
		b := kv.Batch()
		if err := b.Set([]byte(key), v); err != nil {
			return nil, false, err
		}
		b.Expect([]byte(key), nil)
		err = b.Commit(true)
		if err == nil {
			return v, true, nil
		}
		if !errors.Is(err, cas.ErrConflict) {
			return nil, false, err
		}
		// Another server made it meanwhile: read theirs.
	}
	return nil, false, fmt.Errorf("cluster %s: kept changing", key)
}

type certPair struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// loadCert is the server's certificate: --cert/--key when given, the
// cluster's when the server is one, or the one in the data directory.
func loadCert(cfg Config, db *cas.DB) (tls.Certificate, string, error) {
	var cert tls.Certificate
	var err error
	switch {
	case cfg.CertFile != "" || cfg.KeyFile != "":
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return cert, "", fmt.Errorf("serve: --cert and --key go together")
		}
		cert, err = tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	case db.Shared():
		var v []byte
		v, _, err = shared(db, "cert", func() ([]byte, error) {
			// A server migrated into the cluster brings its own pair, so
			// that its clients' pins hold.
			c, cerr := os.ReadFile(filepath.Join(cfg.Data, "cert.pem"))
			k, kerr := os.ReadFile(filepath.Join(cfg.Data, "key.pem"))
			if cerr == nil && kerr == nil {
				if _, err := tls.X509KeyPair(c, k); err == nil {
					return json.Marshal(certPair{Cert: c, Key: k})
				}
			}
			c, k, err := transport.NewCertPEM()
			if err != nil {
				return nil, err
			}
			return json.Marshal(certPair{Cert: c, Key: k})
		})
		if err == nil {
			var p certPair
			if err = json.Unmarshal(v, &p); err == nil {
				cert, err = tls.X509KeyPair(p.Cert, p.Key)
			}
		}
	default:
		return transport.LoadOrCreateCert(cfg.Data)
	}
	if err != nil {
		return cert, "", fmt.Errorf("serve: certificate: %w", err)
	}
	return cert, transport.Fingerprint(cert.Certificate[0]), nil
}

// ensureClusterAdminToken gives this server's data directory the
// cluster's admin token, which the first server made. It reports whether
// this server made it.
func ensureClusterAdminToken(db *cas.DB, tokens *transport.Tokens, path string) (bool, error) {
	var made string
	v, isNew, err := shared(db, "admin-token", func() ([]byte, error) {
		// A server migrated into the cluster brings its admin token.
		if b, err := os.ReadFile(path); err == nil {
			if _, err := tokens.Lookup(strings.TrimSpace(string(b))); err == nil {
				return []byte(strings.TrimSpace(string(b))), nil
			}
		}
		tok, info, err := tokens.Create(transport.AllNamespaces, transport.PermAdmin, "cluster admin")
		made = info.ID
		return []byte(tok), err
	})
	if err != nil {
		return false, err
	}
	if made != "" && !isNew {
		_ = tokens.Revoke(made) // lost the race: the winner's is the one
	}
	tok := strings.TrimSpace(string(v))
	if old, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(old)) == tok {
		return false, nil
	}
	return isNew, state.WriteFileAtomic(path, []byte(tok+"\n"), 0o600)
}
