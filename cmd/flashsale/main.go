// Command flashsale is the flash-sale backend: one binary whose subcommands serve purchases,
// project the ledger into MySQL and administer stock. Run `flashsale -h` for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "flashsale:", err)
	}
	os.Exit(exitCode(err))
}

// usageError marks a mistake on the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError asks for a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var u usageError
	var x exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		return 2
	case errors.As(err, &x):
		return x.code
	}
	return 1
}

// command is one subcommand: its name, a one-line summary and its body.
type command struct {
	name, summary string
	run           func(ctx context.Context, env *env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "sell over HTTP and gRPC and project the ledger into MySQL, in one process", serve},
		{"ingest", "sell over HTTP and gRPC only (no MySQL)", ingestOnly},
		{"project", "project the ledger into MySQL only (run several to share the work)", project},
		{"migrate", "apply the MySQL schema migrations", migrate},
		{"stock", "set, add to or show an item's stock and sale rules", stock},
		{"replay", "rebuild the MySQL projection from the ledger", replay},
		{"pending", "show ledger entries read by the projector and not yet acknowledged", pending},
		{"draw", "run or verify the draw of an item sold by lottery", draw},
		{"audit", "check that stock + sold + reserved = put on sale and that MySQL matches the ledger", audit},
	}
}

// env is what a subcommand gets from the process: its environment and output streams.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// run is the whole program, callable from tests: args excludes the program name.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := &env{getenv: getenv, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		e.usage()
		if len(args) == 0 {
			return usageError{"no command given"}
		}
		return flag.ErrHelp
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	e.usage()
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func (e *env) usage() {
	fmt.Fprintf(e.stderr, "flashsale: a flash-sale backend.\n\nUsage: flashsale <command> [flags] [args]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(e.stderr, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(e.stderr, "\nRun 'flashsale <command> -h' for a command's flags. Flags default from FLASHSALE_* environment variables.\n")
}
