package archive_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/ledger/archive"
	"github.com/flashsale/flashsale/tests/testenv"
)

// The S3 backend against a real S3-speaking server (gofakes3 in its own process, over HTTP).
func TestS3Archive(t *testing.T) {
	ctx := context.Background()
	s3 := testenv.StartS3(t)
	a, err := archive.OpenEnv(ctx, "s3://"+s3.Bucket+"/shop/ledger", s3.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	all := entries(0, 30)
	all[7].Fields["bin"] = "\x00\xff"
	last := write(t, a, 4, "0-0", all[:20], 6)
	if _, err := a.WriteSegment(ctx, 4, "0-0", all[:8]); err != nil { // an overlapping rewrite
		t.Fatal(err)
	}
	write(t, a, 4, last, all[20:], 6)
	if th, err := a.Through(ctx, 4); err != nil || th != all[29].ID {
		t.Fatalf("Through = %s, %v; want %s", th, err, all[29].ID)
	}
	got, err := readAll(t, a, 4, "")
	if err != nil || !reflect.DeepEqual(got, all) {
		t.Fatalf("read back %d entries (%v), want %d, equal", len(got), err, len(all))
	}
	if err := a.PutCheckpoint(ctx, 4, "1005-2", []byte("state")); err != nil {
		t.Fatal(err)
	}
	if cs, err := a.Checkpoints(ctx, 4); err != nil || len(cs) != 1 || string(cs[0].Data) != "state" {
		t.Fatalf("Checkpoints = %v, %v", cs, err)
	}
	if err := a.Bind(ctx, "ledger-a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Bind(ctx, "ledger-b"); err == nil || !strings.Contains(err.Error(), "holds ledger ledger-a") {
		t.Fatalf("Bind of another ledger: %v; want a refusal", err)
	}
	// Another prefix of the same bucket is another archive.
	b, err := archive.OpenEnv(ctx, "s3://"+s3.Bucket+"/other", s3.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if th, _ := b.Through(ctx, 4); th != "0-0" {
		t.Fatalf("other prefix: Through = %s, want 0-0", th)
	}

	for _, u := range []string{"s3://no-such-bucket/x"} {
		_, err := archive.OpenEnv(ctx, u, s3.Getenv)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "not writable") {
			t.Errorf("OpenEnv(%s): %v; want a one-line refusal", u, err)
		}
	}
	bad := map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
	if _, err := archive.OpenEnv(ctx, "s3://"+s3.Bucket+"/x", func(k string) string { return bad[k] }); err == nil {
		t.Error("OpenEnv with an endpoint that does not answer succeeded")
	}
}
