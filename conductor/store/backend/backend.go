// Package backend opens the store a conductor is configured with: the
// PostgreSQL store for a postgres:// (or postgresql://) URL, the embedded
// SQLite store for anything else, taken as a file path.
package backend

import (
	"context"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/postgres"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
)

// Open opens the store named by db and brings its schema up to date.
func Open(ctx context.Context, db string) (store.Store, error) {
	if postgres.IsDSN(db) {
		return postgres.Open(ctx, db)
	}
	return sqlite.Open(ctx, db)
}

// Describe is db as it may be logged: a PostgreSQL URL without its user
// information (which may hold a password), a file path as is.
func Describe(db string) string {
	return postgres.Redact(db)
}
