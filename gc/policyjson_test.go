package gc

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestPolicyJSON: policies print in snake_case, read back the same, and
// policies stored in the old form (Go's field names) still read.
func TestPolicyJSON(t *testing.T) {
	p := Policy{Last: 3, Daily: 7, Within: 48 * time.Hour, Tags: []string{"keep"}, KeepTagged: true}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"keep_last":3,"keep_daily":7,"keep_within":"48h0m0s","keep_tags":["keep"],"keep_tagged":true}`
	if string(b) != want {
		t.Errorf("policy JSON %s, want %s", b, want)
	}
	for _, in := range []string{want, `{"Last":3,"Daily":7,"Within":172800000000000,"Tags":["keep"],"KeepTagged":true}`} {
		got, err := ParsePolicy([]byte(in))
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("ParsePolicy(%s) = %+v, %v; want %+v", in, got, err, p)
		}
	}
	for _, bad := range []string{`{"keep_last":3,"Daily":1}`, `{"keep_within":"forever"}`, `{"nope":1}`} {
		if _, err := ParsePolicy([]byte(bad)); err == nil {
			t.Errorf("ParsePolicy(%s) accepted", bad)
		}
	}
}
