package pop1client

import (
	"errors"
	"testing"
)

func TestSplit(t *testing.T) {
	data := "From a@b Thu Jan  1 00:00:00 1970\r\nSubject: x\r\n\r\n>From y\r\n>>From z\r\n>Fromage\r\n\r\n" +
		"From c@d Thu Jan  1 00:00:00 1970\r\n\r\n"
	msgs, err := Split([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || string(msgs[0].Data) != "Subject: x\r\n\r\nFrom y\r\n>From z\r\n>Fromage\r\n" ||
		msgs[0].Separator != "From a@b Thu Jan  1 00:00:00 1970" || len(msgs[1].Data) != 0 {
		t.Fatalf("Split = %+v", msgs)
	}
	if msgs, err := Split(nil); err != nil || msgs != nil {
		t.Fatalf("Split(nil) = %v, %v", msgs, err)
	}
	for _, bad := range []string{"Subject: x\r\n\r\n", "From a\r\nx\r\n", "From a"} {
		if _, err := Split([]byte(bad)); !errors.Is(err, ErrNotMbox) {
			t.Errorf("Split(%q): %v, want ErrNotMbox", bad, err)
		}
	}
}
