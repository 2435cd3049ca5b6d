package mailstore

import (
	"context"
	"fmt"
	"testing"
)

// TestSessionAll checks that All yields what List returns, skips deleted
// messages, stops when the loop breaks, and allocates nothing.
func TestSessionAll(t *testing.T) {
	drop := &benchDrop{}
	for i := range 50 {
		drop.msgs = append(drop.msgs, MessageInfo{UID: fmt.Sprintf("uid%d", i), Size: int64(100 + i)})
	}
	s, err := NewSession(context.Background(), drop)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 7, 50} {
		if err := s.Delete(n); err != nil {
			t.Fatal(err)
		}
	}
	var got []Numbered
	for m := range s.All() {
		got = append(got, m)
	}
	want := s.List()
	if len(got) != 47 || len(got) != len(want) {
		t.Fatalf("All gave %d messages, List %d, want 47", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: All %+v, List %+v", i, got[i], want[i])
		}
	}
	seen := 0
	for range s.All() {
		seen++
		if seen == 3 {
			break
		}
	}
	if seen != 3 {
		t.Errorf("the loop ran %d times after break at 3", seen)
	}
	var sum int64
	if allocs := testing.AllocsPerRun(20, func() {
		for m := range s.All() {
			sum += m.Size
		}
	}); allocs != 0 {
		t.Errorf("All allocates %v times per listing", allocs)
	}
}
