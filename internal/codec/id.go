package codec

import (
	"math/rand/v2"
	"time"
)

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// NewID returns a 20-character task id: 48 bits of Unix milliseconds then 48
// random bits, in lowercase Crockford base32, so ids sort by creation time and two
// ids collide only if ~16 million are made in the same millisecond.
func NewID(now time.Time) string {
	ms := uint64(now.UnixMilli()) & (1<<48 - 1)
	hi := ms >> 16                         // top 32 bits of the 96
	lo := ms<<48 | rand.Uint64()&(1<<48-1) // the low 64
	var out [20]byte
	for i := 19; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | (hi&31)<<59
		hi >>= 5
	}
	return string(out[:])
}
