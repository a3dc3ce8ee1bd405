package linkem

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseShape reads a direction's shape from the command line's form:
// comma-separated key=value pairs, any of
//
//	delay=25ms jitter=5ms loss=1% dup=0.1% reorder=2% reorder-by=10ms
//	rate=100mbit queue=256KiB max-packet=1280
//
// Fractions take a % or are plain (0.01); a rate is in bits (kbit, mbit,
// gbit) or bytes per second (KB, MB, GB, KiB, MiB, GiB, or a bare count).
// The empty string is a perfect link.
func ParseShape(spec string) (Shape, error) {
	var s Shape
	if strings.TrimSpace(spec) == "" {
		return s, nil
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Shape{}, fmt.Errorf("shape %q: %q is not key=value", spec, kv)
		}
		var err error
		switch k {
		case "delay":
			s.Delay, err = duration(v)
		case "jitter":
			s.Jitter, err = duration(v)
		case "reorder-by":
			s.ReorderBy, err = duration(v)
		case "loss":
			s.Loss, err = fraction(v)
		case "dup":
			s.Duplicate, err = fraction(v)
		case "reorder":
			s.Reorder, err = fraction(v)
		case "rate":
			s.Rate, err = rate(v)
		case "queue":
			var n int64
			n, err = bytesOf(v)
			s.Queue = int(n)
		case "max-packet":
			s.MaxPacket, err = strconv.Atoi(v)
			if err == nil && (s.MaxPacket < 68 || s.MaxPacket > 65535) {
				err = fmt.Errorf("%d bytes (68 to 65535)", s.MaxPacket)
			}
		default:
			return Shape{}, fmt.Errorf("shape %q: unknown key %q", spec, k)
		}
		if err != nil {
			return Shape{}, fmt.Errorf("shape %q: %s: %w", spec, k, err)
		}
	}
	return s, nil
}

// String is the shape in ParseShape's form.
func (s Shape) String() string {
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+v) }
	if s.Delay != 0 {
		add("delay", s.Delay.String())
	}
	if s.Jitter != 0 {
		add("jitter", s.Jitter.String())
	}
	if s.Loss != 0 {
		add("loss", strconv.FormatFloat(s.Loss, 'g', -1, 64))
	}
	if s.Duplicate != 0 {
		add("dup", strconv.FormatFloat(s.Duplicate, 'g', -1, 64))
	}
	if s.Reorder != 0 {
		add("reorder", strconv.FormatFloat(s.Reorder, 'g', -1, 64))
	}
	if s.ReorderBy != 0 {
		add("reorder-by", s.ReorderBy.String())
	}
	if s.Rate != 0 {
		add("rate", strconv.FormatInt(s.Rate, 10))
	}
	if s.Queue != 0 {
		add("queue", strconv.Itoa(s.Queue))
	}
	if s.MaxPacket != 0 {
		add("max-packet", strconv.Itoa(s.MaxPacket))
	}
	return strings.Join(parts, ",")
}

// maxDelay bounds a delay: an hour is no WAN.
const maxDelay = time.Hour

func duration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d < 0 || d > maxDelay {
		return 0, fmt.Errorf("%v (0 to %v)", d, maxDelay)
	}
	return d, nil
}

func fraction(v string) (float64, error) {
	pct := strings.HasSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil {
		return 0, err
	}
	if pct {
		f /= 100
	}
	if !(f >= 0 && f <= 1) {
		return 0, fmt.Errorf("%s (0 to 1, or 0%% to 100%%)", v)
	}
	return f, nil
}

var bitUnits = []struct {
	suffix string
	mult   float64
}{{"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"bit", 1.0 / 8}}

var byteUnits = []struct {
	suffix string
	mult   float64
}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3}, {"b", 1}}

func rate(v string) (int64, error) {
	t := strings.TrimSuffix(strings.ToLower(v), "/s")
	for _, u := range bitUnits {
		if strings.HasSuffix(t, u.suffix) {
			return scaled(strings.TrimSuffix(t, u.suffix), u.mult, v)
		}
	}
	return bytesOf(t)
}

func bytesOf(v string) (int64, error) {
	t := strings.ToLower(v)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			return scaled(strings.TrimSuffix(t, u.suffix), u.mult, v)
		}
	}
	return scaled(t, 1, v)
}

// scaled is num*mult as whole bytes, from 1 to 2^40 (a terabyte a
// second, or of queue, is no link).
func scaled(num string, mult float64, orig string) (int64, error) {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", orig, err)
	}
	n := math.Round(f * mult)
	if !(n >= 1 && n <= 1<<40) {
		return 0, fmt.Errorf("%q: out of range", orig)
	}
	return int64(n), nil
}
