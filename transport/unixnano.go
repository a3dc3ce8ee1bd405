package transport

import (
	"encoding/json"
	"fmt"
	"time"
)

// UnixNano is a time on the wire: nanoseconds since the epoch in CBOR, and
// RFC 3339 with its zone in JSON, the one time format ferry prints.
type UnixNano int64

// At is t as a UnixNano.
func At(t time.Time) UnixNano { return UnixNano(t.UnixNano()) }

// Time is u as a time.Time.
func (u UnixNano) Time() time.Time { return time.Unix(0, int64(u)) }

// MarshalJSON writes u as an RFC 3339 string (UTC, with nanoseconds).
func (u UnixNano) MarshalJSON() ([]byte, error) {
	return json.Marshal(u.Time().UTC().Format(time.RFC3339Nano))
}

// UnmarshalJSON reads what MarshalJSON writes.
func (u *UnixNano) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("time: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("time: %w", err)
	}
	*u = At(t)
	return nil
}

// UnmarshalJSON reads a share as it is printed and stored, and as shares
// were stored before times were RFC 3339 (created_unix_ns and
// expires_unix_ns, in nanoseconds), so that live links survive an upgrade.
func (s *ShareInfo) UnmarshalJSON(b []byte) error {
	type plain ShareInfo
	var v struct {
		plain
		LegacyCreated *int64 `json:"created_unix_ns"`
		LegacyExpires *int64 `json:"expires_unix_ns"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = ShareInfo(v.plain)
	if v.LegacyCreated != nil {
		s.Created = UnixNano(*v.LegacyCreated)
	}
	if v.LegacyExpires != nil {
		s.Expires = UnixNano(*v.LegacyExpires)
	}
	return nil
}
