package main

import (
	"context"
	"fmt"

	"github.com/flashsale/flashsale/projector"
)

func migrate(ctx context.Context, e *env, args []string) error {
	f := e.flags("migrate", "", "Applies the MySQL schema migrations that the database has not recorded yet. Safe to run again.")
	dsn := f.mysqlDSN()
	if err := f.parse(args); err != nil {
		return err
	}
	db, err := openMySQL(*dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := projector.Migrate(ctx, db)
	for _, name := range applied {
		fmt.Fprintln(e.stdout, "applied", name)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(e.stdout, "schema up to date")
	}
	return nil
}
