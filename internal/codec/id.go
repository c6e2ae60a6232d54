package codec

import (
	"math/rand/v2"
	"time"
)

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// crockfordValue maps a byte to its value in crockford plus one (0: not a
// digit): IDTime runs for every task a worker starts.
var crockfordValue = func() (t [256]uint8) {
	for i := range len(crockford) {
		t[crockford[i]] = uint8(i + 1)
	}
	return t
}()

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

// IDTime returns the Unix milliseconds a NewID id was made at; ok is false if
// id is not one.
func IDTime(id string) (ms int64, ok bool) {
	if len(id) != 20 {
		return 0, false
	}
	var hi, lo uint64 // the 100 bits: the top 4 are zero
	for i := range 20 {
		v := crockfordValue[id[i]]
		if v == 0 {
			return 0, false
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v-1)
	}
	if hi>>32 != 0 {
		return 0, false
	}
	ms = int64(hi<<16 | lo>>48)
	return ms, ms > 0
}
