// Package projector keeps MySQL a faithful projection of the ledger: consumer-group workers
// read each partition stream, write orders and items in batches, and acknowledge entries only
// after the MySQL commit. It also owns the MySQL schema migrations.
package projector
