package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
)

// flags is a subcommand's flag set with helpers that take defaults from the environment.
type flags struct {
	*flag.FlagSet
	env *env
}

func (e *env) flags(name, args, about string) *flags {
	fs := flag.NewFlagSet("flashsale "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: flashsale %s [flags] %s\n\n%s\n\nFlags:\n", name, args, about)
		fs.PrintDefaults()
	}
	return &flags{FlagSet: fs, env: e}
}

func (f *flags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

func (f *flags) str(name, envKey, def, usage string) *string {
	if v := f.env.getenv(envKey); v != "" {
		def = v
	}
	return f.String(name, def, usage+" (env "+envKey+")")
}

// secret is str for a flag that may hold a password or a token: the usage text shows its
// default (often taken from the environment) as redact gives it, never as it is.
func (f *flags) secret(name, envKey, def, usage string, redact func(string) string) *string {
	p := f.str(name, envKey, def, usage)
	if fl := f.Lookup(name); fl.DefValue != "" {
		fl.DefValue = redact(fl.DefValue)
	}
	return p
}

// redacted is the form usage text gives a secret: "(set)".
func redacted(string) string { return "(set)" }

// redactDSN hides the password of a MySQL DSN; a DSN that does not parse is shown as "(set)".
func redactDSN(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(set)"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "xxxxx"
	}
	return cfg.FormatDSN()
}

// redactURL hides a URL's user part and query, which may carry credentials.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(set)"
	}
	if u.User == nil && u.RawQuery == "" {
		return s
	}
	u.User, u.RawQuery = nil, ""
	return u.String() + " (with credentials, not shown)"
}

func (f *flags) int(name, envKey string, def int, usage string) *int {
	if n, err := strconv.Atoi(f.env.getenv(envKey)); err == nil {
		def = n
	}
	return f.Int(name, def, usage+" (env "+envKey+")")
}

func (f *flags) boolean(name, envKey string, def bool, usage string) *bool {
	if b, err := strconv.ParseBool(f.env.getenv(envKey)); err == nil {
		def = b
	}
	return f.Bool(name, def, usage+" (env "+envKey+")")
}

func (f *flags) duration(name, envKey string, def time.Duration, usage string) *time.Duration {
	if d, err := time.ParseDuration(f.env.getenv(envKey)); err == nil {
		def = d
	}
	return f.Duration(name, def, usage+" (env "+envKey+")")
}

// redisFlags says where the ledger lives.
type redisFlags struct {
	addr, prefix   *string
	partitions     *int
	pool           *int
	idempotencyTTL *time.Duration
	soldOutLease   *time.Duration
	pipeline       *int
	senders        *int
	winnerMax      *int
	allowEviction  *bool
	cluster        *bool
	sentinelMaster *string
	tlsCA          *string
	minReplicas    *int
	replicaTimeout *time.Duration
	getenv         func(string) string
	stderr         io.Writer
	// create lets open make the ledger when the prefix has none; without it (the read-only
	// commands, stock add) open writes nothing to Redis and refuses a missing ledger.
	create bool
}

func (f *flags) redis() redisFlags {
	return redisFlags{
		addr:           f.secret("redis", "FLASHSALE_REDIS_ADDR", "127.0.0.1:6379", "Redis address: host:port, seed nodes host:port,host:port,..., or redis[s]://[user:password@]host:port[,host:port...][/db]; password and user also from FLASHSALE_REDIS_PASSWORD, FLASHSALE_REDIS_USERNAME", redactRedisAddr),
		prefix:         f.str("prefix", "FLASHSALE_REDIS_PREFIX", ledger.DefaultPrefix, "prefix of every Redis key of the ledger"),
		partitions:     f.int("partitions", "FLASHSALE_PARTITIONS", ledger.DefaultPartitions, "partition streams of a ledger created now (an existing ledger keeps its count)"),
		pool:           f.int("redis-pool", "FLASHSALE_REDIS_POOL", 32*runtime.GOMAXPROCS(0), "Redis connection pool size"),
		idempotencyTTL: f.duration("idempotency-ttl", "FLASHSALE_IDEMPOTENCY_TTL", ledger.DefaultIdempotencyTTL, "how long a request_id at least keeps returning its order (at most about twice as long)"),
		pipeline:       f.int("pipeline", "FLASHSALE_PIPELINE", 64, "send concurrent purchases as pipelines of up to this many purchases, those of one partition as one script call (0: one call per round trip)"),
		senders:        f.int("pipeline-senders", "FLASHSALE_PIPELINE_SENDERS", 1, "pipelines in flight at once, with -pipeline: one makes the largest script calls (the purchases that queued while the last pipeline was on the wire)"),
		soldOutLease:   f.duration("sold-out-lease", "FLASHSALE_SOLD_OUT_LEASE", ledger.DefaultSoldOutLease, "how long an item that had no stock stays sold out after units come back, and so how long a serving process answers sold out from memory after its last read of the ledger; the same for every process of a ledger"),
		winnerMax:      f.int("winner-index-max", "FLASHSALE_WINNER_INDEX_MAX", ledger.DefaultWinnerIndexMax, "most orders indexed in memory to answer sold-out purchases without Redis; an item beyond it asks Redis (negative: no index)"),
		allowEviction:  f.boolean("allow-eviction", "FLASHSALE_ALLOW_EVICTION", false, "run even though Redis's maxmemory-policy is not noeviction (it may then evict acknowledged orders)"),
		cluster:        f.boolean("redis-cluster", "FLASHSALE_REDIS_CLUSTER", false, "talk to Redis Cluster without asking the node (otherwise detected with INFO cluster)"),
		sentinelMaster: f.str("redis-sentinel-master", "FLASHSALE_REDIS_SENTINEL_MASTER", "", "name of the master the sentinels at -redis watch (Redis Sentinel); sentinels' own password from FLASHSALE_REDIS_SENTINEL_PASSWORD"),
		tlsCA:          f.str("redis-tls-ca", "FLASHSALE_REDIS_TLS_CA", "", "PEM file of the CA that signed Redis's TLS certificate, with rediss:// (default: the system's CAs)"),
		minReplicas:    f.int("min-replicas", "FLASHSALE_MIN_REPLICAS", 0, "answer a purchase or stock change only once this many replicas have it (WAIT; WAITAOF on Redis >= 7.2); fewer in time answer 503, retry with the same request_id"),
		replicaTimeout: f.duration("min-replicas-timeout", "FLASHSALE_MIN_REPLICAS_TIMEOUT", ledger.DefaultReplicaTimeout, "how long a write waits for -min-replicas"),
		getenv:         f.env.getenv,
		stderr:         f.env.stderr,
	}
}

// target reads the Redis flags and the password variables.
func (r redisFlags) target() (redisTarget, error) {
	t, err := parseRedisAddr(*r.addr)
	if err != nil {
		return t, usageError{err.Error()}
	}
	if v := r.getenv("FLASHSALE_REDIS_USERNAME"); v != "" {
		t.username = v
	}
	if v := r.getenv("FLASHSALE_REDIS_PASSWORD"); v != "" {
		t.password = v
	}
	t.sentinelPassword = r.getenv("FLASHSALE_REDIS_SENTINEL_PASSWORD")
	t.cluster = *r.cluster
	t.sentinelMaster = *r.sentinelMaster
	t.tlsCA = *r.tlsCA
	if t.cluster && t.sentinelMaster != "" {
		return t, usageError{"-redis-cluster and -redis-sentinel-master: choose one"}
	}
	return t, nil
}

// open connects to Redis and opens the ledger; the returned func closes both.
func (r redisFlags) open(ctx context.Context) (*ledger.Ledger, func(), error) {
	t, err := r.target()
	if err != nil {
		return nil, nil, err
	}
	rdb, err := t.connect(ctx, redisTiming{pool: *r.pool, wait: *r.replicaTimeout})
	if err != nil {
		return nil, nil, fmt.Errorf("open ledger: %w", err)
	}
	if err := r.checkEviction(ctx, rdb, t); err != nil {
		rdb.Close()
		return nil, nil, err
	}
	l, err := ledger.Open(ctx, rdb, ledger.Config{
		Prefix:         *r.prefix,
		Partitions:     *r.partitions,
		IdempotencyTTL: *r.idempotencyTTL,
		SoldOutLease:   *r.soldOutLease,
		Pipeline:       *r.pipeline,
		Senders:        *r.senders,
		MinReplicas:    *r.minReplicas,
		ReplicaTimeout: *r.replicaTimeout,
		WinnerIndexMax: int64(*r.winnerMax),
		MustExist:      !r.create,
	})
	if errors.Is(err, ledger.ErrNoLedger) {
		rdb.Close()
		return nil, nil, fmt.Errorf("%w at %s (prefix %s): check -redis and -prefix, or create it with 'flashsale stock set'", err, t, *r.prefix)
	}
	if err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("open ledger at %s: %w", t, err)
	}
	return l, func() {
		l.Close()
		rdb.Close()
	}, nil
}

// checkEviction refuses a Redis that may evict keys (maxmemory-policy other than noeviction):
// it would drop ledger streams, stock counters and idempotency keys, losing acknowledged
// orders. With -allow-eviction it warns instead; when Redis refuses CONFIG it warns and goes on.
// On a cluster every master is checked.
func (r redisFlags) checkEviction(ctx context.Context, rdb redis.UniversalClient, t redisTarget) error {
	return forEachMaster(ctx, rdb, func(ctx context.Context, node redis.UniversalClient, addr string) error {
		where := t.String()
		if addr != "" {
			where = addr
		}
		return r.checkNodeEviction(ctx, node, where)
	})
}

func (r redisFlags) checkNodeEviction(ctx context.Context, rdb redis.UniversalClient, where string) error {
	log := slog.New(slog.NewTextHandler(r.stderr, nil))
	policy, err := ledger.EvictionPolicy(ctx, rdb)
	switch {
	case errors.Is(err, ledger.ErrUnavailable):
		return fmt.Errorf("open ledger at %s: %w", where, err)
	case err != nil:
		log.Warn("cannot read Redis maxmemory-policy (CONFIG refused); make sure it is noeviction, or Redis may evict acknowledged orders", "err", err)
	case policy == "noeviction":
	case *r.allowEviction:
		log.Warn("Redis maxmemory-policy is "+policy+", not noeviction: at maxmemory Redis EVICTS LEDGER KEYS and acknowledged orders, stock and idempotency keys are LOST; running anyway because of -allow-eviction", "maxmemory_policy", policy)
	default:
		return fmt.Errorf("redis at %s has maxmemory-policy %s: at maxmemory it would evict ledger keys and lose acknowledged orders; "+
			"run it with --maxmemory-policy noeviction, or pass -allow-eviction (env FLASHSALE_ALLOW_EVICTION=1) to run anyway", where, policy)
	}
	return nil
}

// openWithMySQL opens the ledger and the MySQL database of dsn; the returned func closes both.
func (r redisFlags) openWithMySQL(ctx context.Context, dsn string) (*ledger.Ledger, *sql.DB, func(), error) {
	db, err := openMySQL(dsn)
	if err != nil {
		return nil, nil, nil, err
	}
	l, closeLedger, err := r.open(ctx)
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	return l, db, func() {
		closeLedger()
		db.Close()
	}, nil
}

func (f *flags) mysqlDSN() *string {
	return f.secret("mysql", "FLASHSALE_MYSQL_DSN", "flashsale:flashsale@tcp(127.0.0.1:3306)/flashsale?parseTime=true",
		"MySQL/MariaDB DSN (go-sql-driver/mysql format)", redactDSN)
}

// openMySQL opens (without connecting yet) the database of dsn.
func openMySQL(dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
	}
	cfg.ParseTime = true
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxLifetime(5 * time.Minute)
	return db, nil
}

func (f *flags) logger() func() *slog.Logger {
	level := f.str("log-level", "FLASHSALE_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	return func() *slog.Logger {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			l = slog.LevelInfo
		}
		return slog.New(slog.NewTextHandler(f.env.stderr, &slog.HandlerOptions{Level: l}))
	}
}
