package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Store keeps the archive under a prefix of an S3 bucket, through minio-go. One PUT of a
// whole object is atomic in S3 (a reader sees the old object, none, or all of the new one),
// and it is durable once answered.
type s3Store struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or ending in "/"
	endpoint string
}

func newS3Store(ctx context.Context, u *url.URL, getenv func(string) string) (*s3Store, error) {
	bucket := u.Host
	if bucket == "" {
		return nil, fmt.Errorf("archive url %q: want s3://bucket/prefix", u.Redacted())
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	endpoint := first(getenv("AWS_ENDPOINT_URL_S3"), getenv("AWS_ENDPOINT_URL"), "https://s3.amazonaws.com")
	eu, err := url.Parse(endpoint)
	if err != nil || (eu.Scheme != "http" && eu.Scheme != "https") || eu.Host == "" {
		return nil, fmt.Errorf("archive s3 endpoint %q (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL): want http[s]://host[:port]", endpoint)
	}
	var creds *credentials.Credentials
	id := first(getenv("AWS_ACCESS_KEY_ID"), getenv("MINIO_ROOT_USER"))
	secret := first(getenv("AWS_SECRET_ACCESS_KEY"), getenv("MINIO_ROOT_PASSWORD"))
	if id != "" || secret != "" {
		creds = credentials.NewStaticV4(id, secret, getenv("AWS_SESSION_TOKEN"))
	} else {
		// The shared credentials file, then an instance role.
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.FileAWSCredentials{},
			&credentials.IAM{Client: &http.Client{Transport: http.DefaultTransport}},
		})
	}
	client, err := minio.New(eu.Host, &minio.Options{
		Creds:  creds,
		Secure: eu.Scheme == "https",
		Region: first(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION")),
	})
	if err != nil {
		return nil, fmt.Errorf("archive s3 client: %w", err)
	}
	s := &s3Store{client: client, bucket: bucket, prefix: prefix, endpoint: eu.Scheme + "://" + eu.Host}
	ok, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("archive %s is not writable: %w", s, err)
	}
	if !ok {
		return nil, fmt.Errorf("archive %s is not writable: no bucket %q at %s", s, bucket, s.endpoint)
	}
	return s, nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func (s *s3Store) String() string        { return "s3://" + s.bucket + "/" + s.prefix }
func (s *s3Store) key(p string) string   { return s.prefix + p }
func (s *s3Store) where(p string) string { return "s3://" + s.bucket + "/" + s.key(p) }
func (s *s3Store) remove(ctx context.Context, p string) error {
	return s.client.RemoveObject(ctx, s.bucket, s.key(p), minio.RemoveObjectOptions{})
}

func (s *s3Store) put(ctx context.Context, p string, data []byte) error {
	_, err := s.client.PutObject(ctx, s.bucket, s.key(p), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/x-ndjson", SendContentMd5: true, DisableMultipart: true})
	return err
}

func (s *s3Store) get(ctx context.Context, p string) ([]byte, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(p), minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, fmt.Errorf("no such object: %w", fs.ErrNotExist)
		}
		return nil, err
	}
	return data, nil
}

func (s *s3Store) list(ctx context.Context, dir string) ([]string, error) {
	want := s.key(dir) + "/"
	var names []string
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: want}) {
		if obj.Err != nil {
			return nil, obj.Err
		}
		name := strings.TrimPrefix(obj.Key, want)
		if name == "" || strings.HasSuffix(name, "/") || strings.HasPrefix(path.Base(name), ".") {
			continue // a common prefix (sub-directory), or a temporary name
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}
