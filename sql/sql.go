// Package migrations embeds flashsale's MySQL schema: NNNN_name.sql files applied in order by
// projector.Migrate and recorded in schema_migrations. (The folder is sql; the package is
// migrations so that it does not shadow database/sql.)
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
