package store

import (
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	ms, err := LoadMigrations(fstest.MapFS{
		"m/002_more.sql": {Data: []byte("B")},
		"m/001_init.sql": {Data: []byte("A")},
		"m/010_late.sql": {Data: []byte("C")},
	}, "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].Version != 1 || ms[1].Version != 2 || ms[2].Version != 10 || ms[0].SQL != "A" {
		t.Errorf("migrations = %+v, want versions 1, 2, 10 in order", ms)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":  {"m/init.sql": {}},
		"zero":      {"m/000_init.sql": {}},
		"duplicate": {"m/001_a.sql": {}, "m/001_b.sql": {}},
	} {
		if _, err := LoadMigrations(fsys, "m"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
