// Package s3store owns the object-store side of pack storage: immutable
// objects in an S3-compatible bucket (AWS S3, R2, Ceph RGW, MinIO,
// SeaweedFS, versitygw), created only when absent (If-None-Match: *) and
// read by ranges. It knows nothing of packs' contents.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

var (
	// ErrExists: an object of that name exists already (a create lost,
	// or was retried after it won). It is an fs.ErrExist.
	ErrExists = fmt.Errorf("object exists: %w", fs.ErrExist)
	// ErrNotFound: no object of that name. It is an fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("object not found: %w", fs.ErrNotExist)
)

// Options say how to reach the bucket. Empty credentials come from the
// AWS SDK's default chain: AWS_* variables, then ~/.aws/config and
// credentials, then instance roles.
type Options struct {
	// Endpoint is the service URL (http://127.0.0.1:7070); empty is AWS.
	// A custom endpoint is addressed path-style (bucket in the path), as
	// MinIO, Ceph and versitygw expect.
	Endpoint             string
	Region               string
	AccessKey, SecretKey string
	// MaxAttempts bounds the tries of one request: 503s, throttling and
	// dropped connections are retried with jittered exponential backoff
	// (default 8).
	MaxAttempts int
	HTTPClient  *http.Client
}

// Store is a bucket, or a prefix of one.
type Store struct {
	c              *s3.Client
	bucket, prefix string
}

// ParseURL reads s3://BUCKET[/PREFIX][?endpoint=URL&region=R].
func ParseURL(raw string) (bucket, prefix string, o Options, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return "", "", o, fmt.Errorf("store %q: want s3://BUCKET[/PREFIX][?endpoint=URL&region=R]", raw)
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" {
			return "", "", o, fmt.Errorf("store %q: unknown parameter %q (want endpoint or region)", raw, k)
		}
	}
	o.Endpoint, o.Region = q.Get("endpoint"), q.Get("region")
	if o.Endpoint != "" {
		e, err := url.Parse(o.Endpoint)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return "", "", o, fmt.Errorf("store %q: endpoint %q: want http(s)://HOST[:PORT]", raw, o.Endpoint)
		}
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return u.Host, prefix, o, nil
}

// Open returns the store at bucket/prefix. It asks the bucket nothing:
// Check does.
func Open(ctx context.Context, bucket, prefix string, o Options) (*Store, error) {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	loads := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = o.MaxAttempts })
		}),
	}
	if o.Region != "" {
		loads = append(loads, config.WithRegion(o.Region))
	}
	if o.AccessKey != "" {
		loads = append(loads, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")))
	}
	if o.HTTPClient != nil {
		loads = append(loads, config.WithHTTPClient(o.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	c := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
			so.UsePathStyle = true
		}
		// Checksums only when the operation requires them: not every
		// S3-compatible server takes the newer trailing checksums.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Store{c: c, bucket: bucket, prefix: prefix}, nil
}

func (s *Store) key(name string) *string { return aws.String(s.prefix + name) }

// Check reports whether the bucket can be reached.
func (s *Store) Check(ctx context.Context) error {
	_, err := s.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		return fmt.Errorf("s3 bucket %s: %w", s.bucket, classify(err))
	}
	return nil
}

// Ensure makes the bucket when it does not exist (a first server of a
// cluster), and then checks it answers as Check does.
func (s *Store) Ensure(ctx context.Context) error {
	err := s.Check(ctx)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	_, err = s.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)})
	if err != nil && !errors.Is(classify(err), ErrExists) {
		var ae smithy.APIError
		if !errors.As(err, &ae) || (ae.ErrorCode() != "BucketAlreadyOwnedByYou" && ae.ErrorCode() != "BucketAlreadyExists") {
			return fmt.Errorf("s3 bucket %s: create: %w", s.bucket, classify(err))
		}
	}
	return s.Check(ctx)
}

// Create stores the size bytes of r as name, only if no object has that
// name: an object once written never changes. The payload is sent
// unsigned (UNSIGNED-PAYLOAD): SigV4's SHA-256 of every byte cost a third
// of the ingest rate on 2 cores, and every blob in a pack is checked
// against its BLAKE3 name whenever it is read (TLS, on a real endpoint,
// guards the bytes in transit). It returns when the store
// has it durably (S3 acknowledges a PUT once it is). ErrExists when one
// does, which a retried create that had won also sees: the caller
// compares sizes. r is read again from the start on a retry.
func (s *Store) Create(ctx context.Context, name string, r io.ReadSeeker, size int64) error {
	_, err := s.c.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           s.key(name),
		Body:          r,
		ContentLength: aws.Int64(size),
		IfNoneMatch:   aws.String("*"),
	}, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	if err != nil {
		return fmt.Errorf("s3 create %s: %w", name, classify(err))
	}
	return nil
}

// ReadAt reads len(p) bytes of name at off, with one ranged GET.
func (s *Store) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    s.key(name),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)),
	})
	if err != nil {
		return fmt.Errorf("s3 read %s at %d: %w", name, off, classify(err))
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, p); err != nil {
		return fmt.Errorf("s3 read %s at %d: %w", name, off, err)
	}
	return nil
}

// Size returns name's length.
func (s *Store) Size(ctx context.Context, name string) (int64, error) {
	out, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: s.key(name)})
	if err != nil {
		return 0, fmt.Errorf("s3 stat %s: %w", name, classify(err))
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Delete removes name; an absent name is not an error.
func (s *Store) Delete(ctx context.Context, name string) error {
	_, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: s.key(name)})
	if err != nil && !errors.Is(classify(err), ErrNotFound) {
		return fmt.Errorf("s3 delete %s: %w", name, classify(err))
	}
	return nil
}

// List calls fn with each object's name (without the prefix), size and
// last modification.
func (s *Store) List(ctx context.Context, fn func(name string, size int64, modified time.Time) error) error {
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3 list: %w", classify(err))
		}
		for _, o := range page.Contents {
			if err := fn(strings.TrimPrefix(aws.ToString(o.Key), s.prefix), aws.ToInt64(o.Size), aws.ToTime(o.LastModified)); err != nil {
				return err
			}
		}
	}
	return nil
}

// classify maps the answers ferry acts on to sentinels: a lost create
// (412 Precondition Failed, or 409 when two creates race) and a missing
// object.
func classify(err error) error {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusPreconditionFailed, http.StatusConflict:
			return fmt.Errorf("%w: %v", ErrExists, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchBucket":
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		case "PreconditionFailed", "ConditionalRequestConflict":
			return fmt.Errorf("%w: %v", ErrExists, err)
		}
	}
	return err
}
