package store

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered schema change of a driver, from a file named
// NNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// LoadMigrations reads a driver's migrations from dir in fsys, in version
// order. Names must be NNN_name.sql with distinct positive numbers.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share a number", ms[i-1].Name, ms[i].Name)
		}
	}
	return ms, nil
}

// SchemaStatus is how a database's schema stands against the migrations a
// driver knows.
type SchemaStatus struct {
	// Applied are the versions the database records, in order.
	Applied []int
	// Pending are the known migrations not applied yet, in order.
	Pending []Migration
	// Unknown are applied versions this driver does not know: the
	// database was migrated by a newer Herald.
	Unknown []int
}

// NewSchemaStatus compares applied versions with known migrations.
func NewSchemaStatus(known []Migration, applied []int) SchemaStatus {
	st := SchemaStatus{Applied: append([]int(nil), applied...)}
	sort.Ints(st.Applied)
	have := make(map[int]bool, len(applied))
	for _, v := range applied {
		have[v] = true
	}
	knownV := make(map[int]bool, len(known))
	for _, m := range known {
		knownV[m.Version] = true
		if !have[m.Version] {
			st.Pending = append(st.Pending, m)
		}
	}
	for _, v := range st.Applied {
		if !knownV[v] {
			st.Unknown = append(st.Unknown, v)
		}
	}
	return st
}

// Err says why a node may not run on this schema: it is newer than the
// driver knows, or migrations are pending. Nil when current.
func (st SchemaStatus) Err() error {
	switch {
	case len(st.Unknown) > 0:
		return fmt.Errorf("the database's schema has migrations %v that this Herald does not know: it was migrated by a newer Herald; run that version or newer", st.Unknown)
	case len(st.Pending) > 0:
		names := make([]string, len(st.Pending))
		for i, m := range st.Pending {
			names[i] = m.Name
		}
		return fmt.Errorf("%w: %s (run `herald migrate up`, or start with --migrate)", ErrMigrationsPending, strings.Join(names, ", "))
	}
	return nil
}

// ErrMigrationsPending is the error of a schema that lacks migrations.
var ErrMigrationsPending = errorString("the database's schema needs migrations")

type errorString string

func (e errorString) Error() string { return string(e) }
