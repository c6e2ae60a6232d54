package backoff

import (
	"testing"
	"time"
)

func TestExponential(t *testing.T) {
	t.Parallel()
	cases := []struct {
		retried  int
		min, max time.Duration
	}{
		{0, 500 * time.Millisecond, time.Second},
		{3, 4 * time.Second, 8 * time.Second},
		{30, 5 * time.Minute, 10 * time.Minute},
		{1000, 5 * time.Minute, 10 * time.Minute},
	}
	for _, c := range cases {
		for range 100 {
			if d := Exponential(c.retried); d < c.min || d > c.max {
				t.Fatalf("Exponential(%d) = %v, want within [%v, %v]", c.retried, d, c.min, c.max)
			}
		}
	}
}
