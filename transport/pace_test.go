package transport

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/cas"
)

// BenchmarkLimit measures how closely --limit-upload and --limit-download
// hold across parallel streams on loopback: the metric limit-ratio is the
// rate achieved over the limit (1.00 is exact; the target is within 5%).
//
//	go test ./transport -run XXX -bench Limit -benchtime 1x -count 3
func BenchmarkLimit(b *testing.B) {
	const limit = 4 << 20 // 4 MiB/s
	const total = 24 << 20
	for _, dir := range []string{"upload", "download"} {
		b.Run(dir, func(b *testing.B) {
			ctx := context.Background()
			s := startServer(b)
			token := s.token(b, "bench", PermWrite)
			blobs := make([][]byte, total/(1<<20))
			for i := range blobs {
				blobs[i] = make([]byte, 1<<20)
				rand.Read(blobs[i])
			}
			opts := ClientOptions{Token: token, Fingerprint: s.fp, Streams: 8}
			if dir == "upload" {
				opts.LimitUpload = NewLimiter(limit)
			}
			var ratio float64
			for i := 0; i < b.N; i++ {
				c, err := Dial(ctx, s.addr, fmt.Sprintf("bench%d", i), withToken(opts, s.token(b, fmt.Sprintf("bench%d", i), PermWrite)))
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for _, blob := range blobs {
					if err := c.Put(ctx, cas.Sum(blob), blob); err != nil {
						b.Fatal(err)
					}
				}
				if err := c.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				c.Close()
				if dir == "download" {
					dopts := withToken(opts, s.token(b, fmt.Sprintf("bench%d", i), PermRead))
					dopts.LimitDownload = NewLimiter(limit)
					d, err := Dial(ctx, s.addr, fmt.Sprintf("bench%d", i), dopts)
					if err != nil {
						b.Fatal(err)
					}
					refs := make([]cas.Ref, len(blobs))
					for k, blob := range blobs {
						refs[k] = cas.Sum(blob)
					}
					start = time.Now()
					n := 0
					if err := d.GetMany(ctx, refs, func(cas.Ref, []byte) error { n++; return nil }); err != nil || n != len(refs) {
						b.Fatalf("download: %d of %d, %v", n, len(refs), err)
					}
					took = time.Since(start)
					d.Close()
				}
				ratio = float64(total) / took.Seconds() / limit
			}
			b.ReportMetric(ratio, "limit-ratio")
			b.SetBytes(total)
		})
	}
}

func withToken(o ClientOptions, token string) ClientOptions {
	o.Token = token
	return o
}
