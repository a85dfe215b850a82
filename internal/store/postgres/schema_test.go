package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/store"
)

// TestSchema_PendingThenCurrentAndANewerSchemaRefused: Connect changes
// nothing; Schema reports the pending migrations; Migrate applies them;
// a schema with a migration this Herald does not know is refused.
func TestSchema_PendingThenCurrentAndANewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	_, dsn := newTestSchema(t, nil)
	s, err := Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Schema(ctx)
	if err != nil {
		t.Fatal(err)
	}
	known, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pending) != len(known) || !errors.Is(st.Err(), store.ErrMigrationsPending) {
		t.Fatalf("a new schema: %+v, %v; want every migration pending", st, st.Err())
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Schema(ctx); err != nil || st.Err() != nil || len(st.Applied) != len(known) {
		t.Fatalf("after Migrate: %+v, %v", st, err)
	}
	if _, err := s.pool.Exec(ctx, migrationRecordSQL, 999, "999_from_the_future.sql"); err != nil {
		t.Fatal(err)
	}
	st, err = s.Schema(ctx)
	if err != nil || len(st.Unknown) != 1 || !strings.Contains(fmtErr(st.Err()), "newer Herald") {
		t.Errorf("a newer schema: %+v, %v", st, st.Err())
	}
	if err := s.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "newer Herald") {
		t.Errorf("Migrate on a newer schema: %v, want a refusal", err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
