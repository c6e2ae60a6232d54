package worker

import (
	"testing"
	"time"
)

// Unknown tasks come back after a short delay, growing to a
// cap of a few seconds, whatever how many times they were bounced.
func TestUnknownDelay(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		n     int
		delay time.Duration
	}{
		{"first", 0, 250 * time.Millisecond},
		{"second", 1, 500 * time.Millisecond},
		{"third", 2, time.Second},
		{"fourth", 3, 2 * time.Second},
		{"capped", 4, 3 * time.Second},
		{"far past the cap", 63, 3 * time.Second},
		{"huge", 1 << 40, 3 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := unknownDelay(c.n); got != c.delay {
				t.Fatalf("unknownDelay(%d) = %s; want %s", c.n, got, c.delay)
			}
		})
	}
	// The default count makes the total a rolling deploy's length: minutes,
	// not seconds (nor hours).
	var total time.Duration
	for n := range DefaultUnknownRetries {
		total += unknownDelay(n)
	}
	if total < 5*time.Minute || total > 20*time.Minute {
		t.Fatalf("with the default %d retries an unknown task is buried after %s; want minutes", DefaultUnknownRetries, total)
	}
}
