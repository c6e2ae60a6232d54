package codec

import (
	"encoding/binary"
	"fmt"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// reader is a bounds-checked msgpack reader over one buffer: the few shapes the
// envelope uses, plus skip for everything else. It never panics on bad input.
type reader struct {
	b   []byte
	off int
}

func (r *reader) errf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrMalformed, r.off, fmt.Sprintf(format, args...))
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.errf("unexpected end")
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, r.errf("length %d overruns the message", n)
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) uint(size int) (uint64, error) {
	s, err := r.take(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(s[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(s)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(s)), nil
	default:
		return binary.BigEndian.Uint64(s), nil
	}
}

func (r *reader) mapLen() (int, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case msgpcode.IsFixedMap(c):
		return int(c & 0x0f), nil
	case c == msgpcode.Map16:
		n, err := r.uint(2)
		return int(n), err
	case c == msgpcode.Map32:
		n, err := r.uint(4)
		return int(n), err
	}
	return 0, r.errf("want a map, found code 0x%02x", c)
}

func (r *reader) str() ([]byte, error) {
	c, err := r.byte()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case msgpcode.IsFixedString(c):
		n = uint64(c & 0x1f)
	case c == msgpcode.Str8 || c == msgpcode.Bin8:
		n, err = r.uint(1)
	case c == msgpcode.Str16 || c == msgpcode.Bin16:
		n, err = r.uint(2)
	case c == msgpcode.Str32 || c == msgpcode.Bin32:
		n, err = r.uint(4)
	default:
		return nil, r.errf("want a string, found code 0x%02x", c)
	}
	if err != nil {
		return nil, err
	}
	return r.take(int(n))
}

func (r *reader) strString() (string, error) {
	s, err := r.str()
	return string(s), err
}

// bin accepts bin and str alike: some msgpack libraries only know str.
func (r *reader) bin() ([]byte, error) { return r.str() }

func (r *reader) int() (int64, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	if msgpcode.IsFixedNum(c) {
		return int64(int8(c)), nil
	}
	var u uint64
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		u, err = r.uint(1)
		if c == msgpcode.Int8 {
			return int64(int8(u)), err
		}
	case msgpcode.Uint16, msgpcode.Int16:
		u, err = r.uint(2)
		if c == msgpcode.Int16 {
			return int64(int16(u)), err
		}
	case msgpcode.Uint32, msgpcode.Int32:
		u, err = r.uint(4)
		if c == msgpcode.Int32 {
			return int64(int32(u)), err
		}
	case msgpcode.Uint64, msgpcode.Int64:
		u, err = r.uint(8)
		if c == msgpcode.Uint64 && u > 1<<63-1 {
			return 0, r.errf("integer %d overflows int64", u)
		}
	default:
		return 0, r.errf("want an integer, found code 0x%02x", c)
	}
	return int64(u), err
}

// skip steps over one complete value of any type. Nesting is bounded so that a
// hostile message cannot exhaust the stack.
func (r *reader) skip() error { return r.skipDepth(0) }

func (r *reader) skipDepth(depth int) error {
	if depth > 64 {
		return r.errf("nesting deeper than 64")
	}
	c, err := r.byte()
	if err != nil {
		return err
	}
	var n uint64 // bytes to skip, or elements for containers
	switch {
	case msgpcode.IsFixedNum(c), c == msgpcode.Nil, c == msgpcode.True, c == msgpcode.False:
		return nil
	case msgpcode.IsFixedString(c):
		_, err = r.take(int(c & 0x1f))
		return err
	case msgpcode.IsFixedMap(c):
		return r.skipN(int(c&0x0f)*2, depth)
	case msgpcode.IsFixedArray(c):
		return r.skipN(int(c&0x0f), depth)
	}
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		_, err = r.take(1)
	case msgpcode.Uint16, msgpcode.Int16:
		_, err = r.take(2)
	case msgpcode.Uint32, msgpcode.Int32, msgpcode.Float:
		_, err = r.take(4)
	case msgpcode.Uint64, msgpcode.Int64, msgpcode.Double:
		_, err = r.take(8)
	case msgpcode.Str8, msgpcode.Bin8:
		if n, err = r.uint(1); err == nil {
			_, err = r.take(int(n))
		}
	case msgpcode.Str16, msgpcode.Bin16:
		if n, err = r.uint(2); err == nil {
			_, err = r.take(int(n))
		}
	case msgpcode.Str32, msgpcode.Bin32:
		if n, err = r.uint(4); err == nil {
			_, err = r.take(int(n))
		}
	case msgpcode.Array16, msgpcode.Array32, msgpcode.Map16, msgpcode.Map32:
		size := 2
		if c == msgpcode.Array32 || c == msgpcode.Map32 {
			size = 4
		}
		if n, err = r.uint(size); err != nil {
			return err
		}
		if c == msgpcode.Map16 || c == msgpcode.Map32 {
			n *= 2
		}
		return r.skipN(int(n), depth)
	case msgpcode.FixExt1, msgpcode.FixExt2, msgpcode.FixExt4, msgpcode.FixExt8, msgpcode.FixExt16:
		size := map[byte]int{msgpcode.FixExt1: 1, msgpcode.FixExt2: 2, msgpcode.FixExt4: 4, msgpcode.FixExt8: 8, msgpcode.FixExt16: 16}[c]
		_, err = r.take(1 + size)
	case msgpcode.Ext8, msgpcode.Ext16, msgpcode.Ext32:
		size := map[byte]int{msgpcode.Ext8: 1, msgpcode.Ext16: 2, msgpcode.Ext32: 4}[c]
		if n, err = r.uint(size); err == nil {
			_, err = r.take(1 + int(n))
		}
	default:
		return r.errf("unknown code 0x%02x", c)
	}
	return err
}

func (r *reader) skipN(n, depth int) error {
	if n > len(r.b)-r.off { // every element takes at least one byte
		return r.errf("%d elements overrun the message", n)
	}
	for ; n > 0; n-- {
		if err := r.skipDepth(depth + 1); err != nil {
			return err
		}
	}
	return nil
}
