package gc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// policyJSON is a policy as JSON: snake_case, like every JSON ferry
// prints, with the duration in Go's notation ("720h0m0s").
type policyJSON struct {
	Last       int      `json:"keep_last,omitempty"`
	Hourly     int      `json:"keep_hourly,omitempty"`
	Daily      int      `json:"keep_daily,omitempty"`
	Weekly     int      `json:"keep_weekly,omitempty"`
	Monthly    int      `json:"keep_monthly,omitempty"`
	Yearly     int      `json:"keep_yearly,omitempty"`
	Within     string   `json:"keep_within,omitempty"`
	Tags       []string `json:"keep_tags,omitempty"`
	KeepTagged bool     `json:"keep_tagged,omitempty"`
}

// policyV0 is how policies were stored before they had JSON names of
// their own: Go's field names and the duration in nanoseconds.
type policyV0 struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       time.Duration
	Tags                                         []string
	KeepTagged                                   bool
}

// MarshalJSON writes the policy with snake_case names.
func (p Policy) MarshalJSON() ([]byte, error) {
	j := policyJSON{Last: p.Last, Hourly: p.Hourly, Daily: p.Daily, Weekly: p.Weekly, Monthly: p.Monthly, Yearly: p.Yearly, Tags: p.Tags, KeepTagged: p.KeepTagged}
	if p.Within != 0 {
		j.Within = p.Within.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a policy as MarshalJSON writes it, or as policies
// stored by earlier versions were; unknown fields are refused.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var j policyJSON
	if err := strictDecode(b, &j); err == nil {
		var within time.Duration
		if j.Within != "" {
			var err error
			if within, err = time.ParseDuration(j.Within); err != nil {
				return fmt.Errorf("keep_within: %w", err)
			}
		}
		*p = Policy{Last: j.Last, Hourly: j.Hourly, Daily: j.Daily, Weekly: j.Weekly, Monthly: j.Monthly, Yearly: j.Yearly, Within: within, Tags: j.Tags, KeepTagged: j.KeepTagged}
	} else if v0err := strictDecode(b, (*policyV0)(p)); v0err != nil {
		return err
	}
	if len(p.Tags) == 0 {
		p.Tags = nil // "keep_tags":[] and no tags are one policy
	}
	return nil
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
