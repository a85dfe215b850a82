package id

import (
	"testing"
	"time"
)

func TestLowest_SortsBeforeEveryIDMadeFromThen(t *testing.T) {
	before := Lowest(Delivery, time.Now())
	for range 1000 {
		if id := New(Delivery); id < before {
			t.Fatalf("%s made after sorts before %s", id, before)
		}
	}
	if later := Lowest(Delivery, time.Now().Add(time.Hour)); New(Delivery) >= later {
		t.Fatal("an ID made now sorts after the lowest of an hour from now")
	}
}
