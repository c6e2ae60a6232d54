// Package backoff computes retry delays.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Exponential is the default retry delay: 1s·2^retried, capped at 10 minutes,
// with "full jitter" over its upper half (so 0.5x–1x of the nominal delay) to keep
// a burst of failures from retrying in lockstep.
func Exponential(retried int) time.Duration {
	const base, ceiling = time.Second, 10 * time.Minute
	d := ceiling
	if retried < 20 {
		d = min(base<<retried, ceiling)
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}
