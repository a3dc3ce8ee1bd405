package transport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// Perm is what a token allows.
type Perm string

// Permissions, each including the ones before it.
const (
	PermRead  Perm = "read"
	PermWrite Perm = "write"
	PermAdmin Perm = "admin"
)

// AllNamespaces is the namespace of an admin token that may act on every
// namespace.
const AllNamespaces = "*"

func (p Perm) rank() int {
	switch p {
	case PermRead:
		return 1
	case PermWrite:
		return 2
	case PermAdmin:
		return 3
	}
	return 0
}

// Allows reports whether p includes q.
func (p Perm) Allows(q Perm) bool { return p.rank() >= q.rank() && q.rank() > 0 }

// ParsePerm checks a permission name.
func ParsePerm(s string) (Perm, error) {
	p := Perm(s)
	if p.rank() == 0 {
		return "", fmt.Errorf("permission %q: want read, write or admin", s)
	}
	return p, nil
}

// Tokens keeps bearer tokens, hashed, in a store's KV space: the store
// never holds a token itself, only its SHA-256.
type Tokens struct {
	kv  *cas.KV
	now func() time.Time
	// redeemMu makes an invite's check and its trade one step.
	redeemMu sync.Mutex
}

// tokenRecord is the stored form.
type tokenRecord struct {
	ID        string    `json:"id"`
	Namespace string    `json:"namespace"`
	Perm      Perm      `json:"perm"`
	Created   time.Time `json:"created"`
	Label     string    `json:"label,omitempty"`
	// Share is set for a share link's token (Perm is PermShare).
	Share *ShareInfo `json:"share,omitempty"`
	// Invite is set for an invite's token (Perm is PermInvite).
	Invite *InviteInfo `json:"invite,omitempty"`
}

// NewTokens returns the token store of db.
func NewTokens(db *cas.DB, now func() time.Time) (*Tokens, error) {
	kv, err := db.KV("tokens")
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Tokens{kv: kv, now: now}, nil
}

const tokenPrefix = "ferry_"

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Create makes a token for namespace (AllNamespaces with admin) and
// returns it: the only time it is ever seen.
func (t *Tokens) Create(namespace string, perm Perm, label string) (string, TokenInfo, error) {
	if perm.rank() == 0 {
		return "", TokenInfo{}, fmt.Errorf("permission %q: want read, write or admin", perm)
	}
	if namespace != AllNamespaces || perm != PermAdmin {
		if err := cas.ValidName(namespace); err != nil {
			return "", TokenInfo{}, fmt.Errorf("namespace: %w", err)
		}
	}
	token, h, err := newTokenString()
	if err != nil {
		return "", TokenInfo{}, err
	}
	rec := tokenRecord{ID: hex.EncodeToString(h[:6]), Namespace: namespace, Perm: perm, Created: t.now().UTC(), Label: label}
	v, _ := json.Marshal(rec)
	batch := t.kv.Batch()
	if err := batch.Set(h, v); err != nil {
		batch.Close()
		return "", TokenInfo{}, err
	}
	if err := batch.Commit(true); err != nil {
		return "", TokenInfo{}, err
	}
	return token, rec.info(), nil
}

func (r tokenRecord) info() TokenInfo {
	return TokenInfo{ID: r.ID, Namespace: r.Namespace, Perm: string(r.Perm), Created: At(r.Created), Label: r.Label}
}

// ValidToken checks a token string's form: ferry_ and 32 lowercase
// base32 letters (what Create makes). It says nothing of whether the
// token is known.
func ValidToken(token string) error {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok || len(rest) != tokenLen {
		return fmt.Errorf("%w: malformed token (want %s and %d letters and digits)", ErrAuth, tokenPrefix, tokenLen)
	}
	for _, c := range rest {
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return fmt.Errorf("%w: malformed token (want %s and %d letters and digits)", ErrAuth, tokenPrefix, tokenLen)
		}
	}
	return nil
}

// tokenLen is the length of a token's random part: 20 bytes in base32.
const tokenLen = 32

// Lookup returns the record of a presented token, or ErrAuth.
func (t *Tokens) Lookup(token string) (tokenRecord, error) {
	if err := ValidToken(token); err != nil {
		return tokenRecord{}, err
	}
	v, err := t.kv.Get(tokenHash(token))
	if errors.Is(err, cas.ErrNotFound) {
		return tokenRecord{}, fmt.Errorf("%w: unknown or revoked token", ErrAuth)
	}
	if err != nil {
		return tokenRecord{}, err
	}
	var rec tokenRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return tokenRecord{}, fmt.Errorf("%w: token record: %v", cas.ErrCorrupt, err)
	}
	if rec.Share != nil && rec.Share.Expired(t.now()) {
		return tokenRecord{}, fmt.Errorf("%w: the share link expired", ErrAuth)
	}
	if rec.Invite != nil && rec.Invite.Used != "" {
		return tokenRecord{}, cas.Errorf(ErrInviteUsed, "%w: the invite was used already (it became device token %s); ask for a new one", ErrAuth, rec.Invite.Used)
	}
	if rec.Invite != nil && rec.Invite.Expired(t.now()) {
		return tokenRecord{}, fmt.Errorf("%w: the invite expired at %s; ask for a new one", ErrAuth, rec.Invite.Expires.Time().UTC().Format(time.RFC3339))
	}
	return rec, nil
}

// List returns every token's record, sorted by namespace and id.
func (t *Tokens) List() ([]TokenInfo, error) {
	var out []TokenInfo
	err := t.kv.Scan(nil, func(_, v []byte) error {
		var rec tokenRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("%w: token record: %v", cas.ErrCorrupt, err)
		}
		if rec.Invite == nil || rec.Invite.Used == "" { // a used invite grants nothing
			out = append(out, rec.info())
		}
		return nil
	})
	slices.SortFunc(out, func(a, b TokenInfo) int {
		return strings.Compare(a.Namespace+"/"+a.ID, b.Namespace+"/"+b.ID)
	})
	return out, err
}

// Revoke removes the token with the given id; connections it
// authenticated are closed by the server.
func (t *Tokens) Revoke(id string) error {
	var key []byte
	err := t.kv.Scan(nil, func(k, v []byte) error {
		var rec tokenRecord
		if json.Unmarshal(v, &rec) == nil && rec.ID == id {
			key = append([]byte(nil), k...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if key == nil {
		return fmt.Errorf("token %s: %w", id, cas.ErrNotFound)
	}
	batch := t.kv.Batch()
	if err := batch.Delete(key); err != nil {
		batch.Close()
		return err
	}
	return batch.Commit(true)
}
