package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/tests/testenv"
)

func TestParseRedisAddr(t *testing.T) {
	tests := []struct {
		in   string
		want redisTarget
	}{
		{"127.0.0.1:6379", redisTarget{addrs: []string{"127.0.0.1:6379"}}},
		{"a:1, b:2,c:3", redisTarget{addrs: []string{"a:1", "b:2", "c:3"}}},
		{"redis://h:7000", redisTarget{addrs: []string{"h:7000"}}},
		{"redis://h", redisTarget{addrs: []string{"h:6379"}}},
		{"redis://u:p%40ss@h:1,g:2/3", redisTarget{addrs: []string{"h:1", "g:2"}, username: "u", password: "p@ss", db: 3}},
		{"redis://:secret@h:1", redisTarget{addrs: []string{"h:1"}, password: "secret"}},
		{"redis://secret@h:1", redisTarget{addrs: []string{"h:1"}, password: "secret"}},
		{"rediss://u:p@h:1?addr=g:2&addr=k:3", redisTarget{addrs: []string{"h:1", "g:2", "k:3"}, username: "u", password: "p", tls: true}},
		{"REDISS://[::1]:6380", redisTarget{addrs: []string{"[::1]:6380"}, tls: true}},
	}
	for _, tt := range tests {
		got, err := parseRedisAddr(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseRedisAddr(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", " , ", "http://h:1", "h:0", "h:x", "redis://u:hunter2@h:99999", "redis://u:hunter2@h:1/x", "redis://u:hunter2@h:1/%zz"} {
		_, err := parseRedisAddr(in)
		if err == nil {
			t.Errorf("parseRedisAddr(%q): no error", in)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("parseRedisAddr(%q): error %q shows the password", in, err)
		}
	}
}

// A Redis that refuses the password (or is not there) is reported by address and by the
// server's words, never with the password, whether it came in the URL or the environment.
func TestRedisPasswordNeverInErrors(t *testing.T) {
	r, _ := testenv.StartRedisWith(t, "--requirepass", "right-pass")
	closed := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	const secret = "hunter2-secret"
	cases := []map[string]string{
		{"FLASHSALE_REDIS_ADDR": "redis://app:" + secret + "@" + r.Addr},
		{"FLASHSALE_REDIS_ADDR": r.Addr, "FLASHSALE_REDIS_PASSWORD": secret},
		{"FLASHSALE_REDIS_ADDR": "redis://:" + secret + "@" + closed},
		{"FLASHSALE_REDIS_ADDR": closed, "FLASHSALE_REDIS_PASSWORD": secret, "FLASHSALE_REDIS_USERNAME": "app"},
		{"FLASHSALE_REDIS_ADDR": "redis://:" + secret + "@" + closed, "FLASHSALE_REDIS_CLUSTER": "1"},
		{"FLASHSALE_REDIS_ADDR": closed, "FLASHSALE_REDIS_PASSWORD": secret, "FLASHSALE_REDIS_SENTINEL_MASTER": "m"},
	}
	for _, env := range cases {
		out, stderr, err := runCmd(t, env, "stock", "set", "demo", "5")
		if err == nil {
			t.Fatalf("%v: stock set worked with a wrong password", env)
		}
		for _, s := range []string{out, stderr, err.Error()} {
			if strings.Contains(s, secret) {
				t.Fatalf("%v: the password is shown: %q", env, s)
			}
		}
		if !strings.Contains(err.Error(), closed) && !strings.Contains(err.Error(), r.Addr) {
			t.Fatalf("%v: error %q names no address", env, err)
		}
	}
	// The right password works, from the URL and from the environment.
	for _, env := range []map[string]string{
		{"FLASHSALE_REDIS_ADDR": "redis://:right-pass@" + r.Addr},
		{"FLASHSALE_REDIS_ADDR": r.Addr, "FLASHSALE_REDIS_PASSWORD": "right-pass"},
	} {
		if out, stderr, err := runCmd(t, env, "stock", "set", "demo", "5"); err != nil || out != "demo stock 5\n" {
			t.Fatalf("%v: got %q, %v, stderr %q", env, out, err, stderr)
		}
	}
}

// An ACL user (not the default user) reaches the ledger with its name and password, from the
// environment or the URL; a user that may not run CONFIG gets a warning, not a refusal.
func TestRedisACLUser(t *testing.T) {
	r, _ := testenv.StartRedisWith(t, "--requirepass", "default-pass",
		"--user", "app", "on", ">app-pass", "~*", "&*", "+@all",
		"--user", "noconfig", "on", ">nc-pass", "~*", "&*", "+@all", "-config")
	for _, env := range []map[string]string{
		{"FLASHSALE_REDIS_ADDR": r.Addr, "FLASHSALE_REDIS_USERNAME": "app", "FLASHSALE_REDIS_PASSWORD": "app-pass"},
		{"FLASHSALE_REDIS_ADDR": "redis://app:app-pass@" + r.Addr},
	} {
		if out, stderr, err := runCmd(t, env, "stock", "set", "demo", "5"); err != nil || out != "demo stock 5\n" {
			t.Fatalf("%v: got %q, %v, stderr %q", env, out, err, stderr)
		}
	}
	out, stderr, err := runCmd(t, map[string]string{"FLASHSALE_REDIS_ADDR": "redis://noconfig:nc-pass@" + r.Addr}, "stock", "set", "demo", "6")
	if err != nil || out != "demo stock 6\n" || !strings.Contains(stderr, "CONFIG refused") {
		t.Fatalf("user without CONFIG: got %q, %v, stderr %q; want it to run with a warning", out, err, stderr)
	}
	_, _, err = runCmd(t, map[string]string{"FLASHSALE_REDIS_ADDR": "redis://app:wrong-pass@" + r.Addr}, "stock", "set", "demo", "5")
	if err == nil || strings.Contains(err.Error(), "wrong-pass") || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: got %v, want WRONGPASS without the password", err)
	}
}

// rediss:// talks TLS to a redis-server with --tls-port and a certificate the test makes;
// the CA comes from FLASHSALE_REDIS_TLS_CA, and without it the certificate is refused.
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := makeCerts(t)
	for name, b := range map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := strconv.Itoa(testenv.FreePort(t))
	cmd := exec.Command("redis-server", "--port", "0", "--tls-port", port, "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--logfile", filepath.Join(dir, "redis.log"),
		"--tls-cert-file", filepath.Join(dir, "cert.pem"), "--tls-key-file", filepath.Join(dir, "key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + port
	env := map[string]string{"FLASHSALE_REDIS_ADDR": "rediss://" + addr, "FLASHSALE_REDIS_TLS_CA": filepath.Join(dir, "ca.pem")}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, stderr, err := runCmd(t, env, "stock", "set", "demo", "5")
		if err == nil && out == "demo stock 5\n" {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("over TLS: got %q, %v, stderr %q\n%s", out, err, stderr, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, _, err := runCmd(t, map[string]string{"FLASHSALE_REDIS_ADDR": "rediss://" + addr}, "stock", "set", "demo", "5")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: got %v, want a certificate error", err)
	}
	_, _, err = runCmd(t, map[string]string{"FLASHSALE_REDIS_ADDR": addr}, "stock", "set", "demo", "5")
	if err == nil {
		t.Fatal("plain text to a TLS port: no error")
	}
}

// makeCerts returns a CA and a certificate for 127.0.0.1 signed by it, as PEM.
func makeCerts(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flashsale test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// Given one seed node of a Redis Cluster, the commands detect the cluster (keys of every
// partition land on their masters) and check the eviction policy of every master.
func TestClusterDetectedAndEveryMasterChecked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := testenv.StartCluster(t)
	env := map[string]string{"FLASHSALE_REDIS_ADDR": c.Addrs()[0]}
	for i := range 20 { // items of many partitions, so of every master
		if out, stderr, err := runCmd(t, env, "stock", "set", fmt.Sprintf("item%d", i), "5"); err != nil || !strings.Contains(out, "stock 5") {
			t.Fatalf("stock set on a cluster seed: got %q, %v, stderr %q", out, err, stderr)
		}
	}
	var masters []*redis.Client
	ctx := context.Background()
	if err := c.Client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		masters = append(masters, m)
		return nil
	}); err != nil || len(masters) != 3 {
		t.Fatalf("masters: %d, %v", len(masters), err)
	}
	last := masters[len(masters)-1]
	if err := last.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	_, _, err := runCmd(t, env, "stock", "set", "demo", "5")
	if err == nil || !strings.Contains(err.Error(), "allkeys-lru") || !strings.Contains(err.Error(), last.Options().Addr) {
		t.Fatalf("one master evicting: got %v, want a refusal naming %s and its policy", err, last.Options().Addr)
	}
}

// The edge cases of -redis: a database in the query is used (or refused, never dropped), an
// IPv6 address alone gets port 6379.
func TestParseRedisAddrEdges(t *testing.T) {
	for in, want := range map[string]redisTarget{
		"redis://h:1?db=3":        {addrs: []string{"h:1"}, db: 3},
		"redis://h:1/3?db=3":      {addrs: []string{"h:1"}, db: 3},
		"[::1]":                   {addrs: []string{"[::1]:6379"}},
		"::1":                     {addrs: []string{"[::1]:6379"}},
		"redis://[::1]":           {addrs: []string{"[::1]:6379"}},
		"redis://[::1]:7000?db=0": {addrs: []string{"[::1]:7000"}},
	} {
		got, err := parseRedisAddr(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseRedisAddr(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"redis://h:1/2?db=3", "redis://h:1?db=x", "redis://h:1?db=1&db=2", "redis://h:1?timeout=3", "a:b:c", "[h:1"} {
		if got, err := parseRedisAddr(in); err == nil {
			t.Errorf("parseRedisAddr(%q) = %+v, want an error", in, got)
		}
	}
}

// redis://host:port?db=3 puts the ledger in database 3.
func TestRedisDBQueryHonoured(t *testing.T) {
	srv, rdb := testenv.StartRedis(t)
	env := map[string]string{"FLASHSALE_REDIS_ADDR": "redis://" + srv.Addr + "?db=3"}
	if out, stderr, err := runCmd(t, env, "stock", "set", "demo", "5"); err != nil || out != "demo stock 5\n" {
		t.Fatalf("stock set: %q, %v, %s", out, err, stderr)
	}
	ctx := context.Background()
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("database 0 has %d keys, want 0", n)
	}
	db3 := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 3})
	defer db3.Close()
	if n := db3.DBSize(ctx).Val(); n == 0 {
		t.Fatal("database 3 has no keys")
	}
}

// Many seeds are asked at once: 199 closed ports before the one live node cost one dial, not
// one dial (with go-redis's retries) each, which took about 80 s.
func TestManySeedsAskedAtOnce(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	seeds := make([]string, 0, 200)
	for range 199 {
		seeds = append(seeds, "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)))
	}
	seeds = append(seeds, srv.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut strings.Builder
	env := map[string]string{"FLASHSALE_REDIS_ADDR": strings.Join(seeds, ",")}
	err := run(ctx, []string{"stock", "set", "demo", "5"}, func(k string) string { return env[k] }, &out, &errOut)
	// The live node is no cluster node: the answer is that, not a timeout.
	if err == nil || !strings.Contains(err.Error(), "not in cluster mode") {
		t.Fatalf("got %v, want the live seed's answer (not in cluster mode)", err)
	}
	if strings.Count(err.Error(), "127.0.0.1:") > 4 {
		t.Fatalf("error lists every seed: %v", err)
	}
}

// rediss:// to a plain-text port fails with a message about TLS, within the dial timeout
// rather than after go-redis's retries.
func TestTLSToPlainPortNamesTLS(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := map[string]string{"FLASHSALE_REDIS_ADDR": "rediss://" + srv.Addr}
	err := run(ctx, []string{"stock", "get", "demo"}, func(k string) string { return env[k] }, &strings.Builder{}, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "TLS handshake") || !strings.Contains(err.Error(), srv.Addr) {
		t.Fatalf("got %v, want a TLS handshake error naming %s", err, srv.Addr)
	}
}
