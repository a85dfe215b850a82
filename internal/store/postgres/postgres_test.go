package postgres_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/postgres"
	"github.com/heraldhq/herald/internal/store/storetest"
)

// open returns a store in a new schema of its own, dropped when the test
// ends.
func open(tb testing.TB) store.Store {
	s, _ := postgres.OpenTestStore(tb, nil)
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, open)
}
