package projector

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	sq "github.com/Masterminds/squirrel"

	migrations "github.com/flashsale/flashsale/sql"
)

// Migrate applies the embedded migrations that db has not recorded yet, in file-name order,
// recording each in schema_migrations. It returns the names applied. Concurrent callers are
// serialised by a MySQL named lock, so running it twice, or from two processes, is harmless.
func Migrate(ctx context.Context, db *sql.DB) ([]string, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('flashsale_migrate', 60)").Scan(&got); err != nil || got.Int64 != 1 {
		return nil, fmt.Errorf("migrate: take lock: %v (got %v)", err, got.Int64)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK('flashsale_migrate')")

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name VARCHAR(255) NOT NULL PRIMARY KEY,
		applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
	)`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done := map[string]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT name FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
		}
		done[name] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}

	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrate: list: %w", err)
	}
	slices.Sort(names)
	var applied []string
	for _, name := range names {
		if done[name] {
			continue
		}
		body, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return applied, fmt.Errorf("migrate: read %s: %w", name, err)
		}
		// MySQL commits DDL implicitly, so each statement is written to be re-runnable
		// (IF NOT EXISTS) and the file is recorded only after all of it ran.
		for _, stmt := range statements(string(body)) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migrate: %s: %w", name, err)
			}
		}
		q, args := sq.Insert("schema_migrations").Columns("name").Values(name).MustSql()
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			return applied, fmt.Errorf("migrate: record %s: %w", name, err)
		}
		applied = append(applied, name)
	}
	return applied, nil
}

// statements splits a migration file into statements at semicolons that end a line, dropping
// comment lines.
func statements(body string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(body) {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
