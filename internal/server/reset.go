package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/state"
	"github.com/ferry-sync/ferry/transport"
)

// ResetResult is what ResetAdmin did.
type ResetResult struct {
	// TokenFile holds the new server admin token (mode 0600).
	TokenFile string `json:"admin_token_file"`
	ID        string `json:"id"`
	// Revoked lists the server admin tokens revoked (with revokeOthers).
	Revoked []string `json:"revoked,omitempty"`
}

// ResetAdmin makes a new server admin token for the stopped server in
// data and writes it to data/admin.token: the way back in when every
// admin token is lost. With revokeOthers it revokes every other server
// admin token too (for a token that leaked). Only someone who can open
// the server's data directory can run it, which is the authority it
// needs.
func ResetAdmin(data string, revokeOthers bool) (ResetResult, error) {
	store := filepath.Join(data, "store")
	if _, err := os.Stat(store); err != nil {
		return ResetResult{}, fmt.Errorf("reset-admin: %s is not a server's data directory: %w", data, err)
	}
	db, err := cas.Open(store, cas.Options{MetadataOnly: true}) // tokens only: its packs may be in S3
	if errors.Is(err, cas.ErrLocked) {
		return ResetResult{}, fmt.Errorf("reset-admin %s: %w; stop the server first", data, ErrLocked)
	}
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset-admin: %w", err)
	}
	defer db.Close()
	tokens, err := transport.NewTokens(db, nil)
	if err != nil {
		return ResetResult{}, err
	}
	tok, info, err := tokens.Create(transport.AllNamespaces, transport.PermAdmin, "server admin (reset)")
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset-admin: %w", err)
	}
	res := ResetResult{TokenFile: filepath.Join(data, "admin.token"), ID: info.ID}
	// The file first: a crash before it leaves an unused token, never a
	// file naming a token the store lacks.
	if err := state.WriteFileAtomic(res.TokenFile, []byte(tok+"\n"), 0o600); err != nil {
		return ResetResult{}, fmt.Errorf("reset-admin: %w", err)
	}
	if !revokeOthers {
		return res, nil
	}
	all, err := tokens.List()
	if err != nil {
		return res, err
	}
	for _, t := range all {
		if t.Namespace == transport.AllNamespaces && t.Perm == string(transport.PermAdmin) && t.ID != info.ID {
			if err := tokens.Revoke(t.ID); err != nil {
				return res, fmt.Errorf("reset-admin: revoke %s: %w", t.ID, err)
			}
			res.Revoked = append(res.Revoked, t.ID)
		}
	}
	return res, nil
}
