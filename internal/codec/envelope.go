// Package codec is rediq's wire format: the versioned msgpack envelope that every
// task message is stored as in Redis (docs/PROTOCOL.md is its specification).
//
// The envelope is a msgpack map with one-letter keys. Only what differs from the
// registered task's defaults is written, so a typical message is well under 100
// bytes. Encoding is hand-rolled (append-only, no reflection) because it sits on the
// enqueue hot path; decoding accepts any valid msgpack encoding of the same map, so
// producers in other languages may use any msgpack library.
package codec

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Version is the envelope version this code writes and the highest it reads.
const Version = 1

// Envelope is one task message.
type Envelope struct {
	ID         string // "i": task id; omitted when empty (a stored record's id is its hash field)
	Name       string // "n": registered task name
	Args       []byte // "a": the arguments, one msgpack value (kept raw)
	EnqueuedAt int64  // "t": Unix milliseconds of the first enqueue; omitted when 0 (see Complete)
	Priority   int    // "p": omitted when 0
	MaxRetries int    // "r": per-call override; -1 (omitted) means the task's default
	TimeoutMs  int64  // "o": per-call override; 0 (omitted) means the task's default
	Retried    int    // "x": retries used: failed attempts that were retried; omitted when 0
	Unknown    int    // "u": times a worker without the task's name put it back; omitted when 0
	Error      string // "e": the last attempt's error, once one failed
	Stack      string // "k": the stack of a panic, when the last attempt panicked
	Raw        []byte // "b": bytes that could not be decoded (dead messages only)
	// RetentionMs ("d") keeps the task's record (and result) that long after it
	// finishes; omitted when 0 (nothing kept).
	RetentionMs int64
	// MemoMs ("m") is the Memoize ttl: a success's result is cached that
	// long; omitted when 0. (Both tell the worker to send the result with the
	// outcome; the scripts read the task's meta, §3, not these.)
	MemoMs int64
	// Batch ("h") is the id of the batch the task belongs to (rediq.InBatch);
	// omitted when 0.
	Batch int64
	// LimitKey ("l") is the key the task's limits apply per (rediq.LimitKey);
	// omitted when "". Its flow is Name|LimitKey (docs/PROTOCOL.md §2).
	LimitKey string

	// Extra holds the keys this version does not know, as raw msgpack key/value
	// pairs (ExtraN of them), so that a worker re-encoding a message for a retry
	// or the dead set passes a newer producer's additions on unchanged.
	Extra  []byte
	ExtraN int
}

// Bounds a decoded message must respect: values outside them would corrupt a
// score, a shift or a timer, so such a message is malformed (it goes to dead
// with the reason) rather than run.
const (
	MinPriority  = -2048
	MaxPriority  = 2047
	MaxRetries   = 1_000_000
	MaxTimeoutMs = 366 * 24 * 3600 * 1000 // a year and a day
	// MaxRetentionMs bounds Retention and Memoize: a year and a day.
	MaxRetentionMs = MaxTimeoutMs
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed message")

// Append encodes e onto dst.
func Append(dst []byte, e *Envelope) []byte {
	n := 2 // v, n
	if e.ID != "" {
		n++
	}
	if e.EnqueuedAt != 0 {
		n++
	}
	if e.Args != nil {
		n++
	}
	if e.Priority != 0 {
		n++
	}
	if e.MaxRetries >= 0 {
		n++
	}
	if e.TimeoutMs > 0 {
		n++
	}
	if e.Retried != 0 {
		n++
	}
	if e.Unknown != 0 {
		n++
	}
	if e.Error != "" {
		n++
	}
	if e.Stack != "" {
		n++
	}
	if e.LimitKey != "" {
		n++
	}
	if e.Raw != nil {
		n++
	}
	if e.RetentionMs != 0 {
		n++
	}
	if e.MemoMs != 0 {
		n++
	}
	if e.Batch != 0 {
		n++
	}
	n += e.ExtraN
	if n < 16 {
		dst = append(dst, byte(msgpcode.FixedMapLow)|byte(n))
	} else {
		dst = append(dst, msgpcode.Map16, byte(n>>8), byte(n))
	}
	dst = appendKey(dst, 'v')
	dst = appendInt(dst, Version)
	if e.ID != "" {
		dst = appendKey(dst, 'i')
		dst = appendStr(dst, e.ID)
	}
	dst = appendKey(dst, 'n')
	dst = appendStr(dst, e.Name)
	if e.Args != nil {
		dst = appendKey(dst, 'a')
		dst = append(dst, e.Args...)
	}
	if e.EnqueuedAt != 0 {
		dst = appendKey(dst, 't')
		dst = appendInt(dst, e.EnqueuedAt)
	}
	if e.Priority != 0 {
		dst = appendKey(dst, 'p')
		dst = appendInt(dst, int64(e.Priority))
	}
	if e.MaxRetries >= 0 {
		dst = appendKey(dst, 'r')
		dst = appendInt(dst, int64(e.MaxRetries))
	}
	if e.TimeoutMs > 0 {
		dst = appendKey(dst, 'o')
		dst = appendInt(dst, e.TimeoutMs)
	}
	if e.Retried != 0 {
		dst = appendKey(dst, 'x')
		dst = appendInt(dst, int64(e.Retried))
	}
	if e.Unknown != 0 {
		dst = appendKey(dst, 'u')
		dst = appendInt(dst, int64(e.Unknown))
	}
	if e.Error != "" {
		dst = appendKey(dst, 'e')
		dst = appendStr(dst, e.Error)
	}
	if e.Stack != "" {
		dst = appendKey(dst, 'k')
		dst = appendStr(dst, e.Stack)
	}
	if e.LimitKey != "" {
		dst = appendKey(dst, 'l')
		dst = appendStr(dst, e.LimitKey)
	}
	if e.Raw != nil {
		dst = appendKey(dst, 'b')
		dst = appendBin(dst, e.Raw)
	}
	if e.RetentionMs != 0 {
		dst = appendKey(dst, 'd')
		dst = appendInt(dst, e.RetentionMs)
	}
	if e.MemoMs != 0 {
		dst = appendKey(dst, 'm')
		dst = appendInt(dst, e.MemoMs)
	}
	if e.Batch != 0 {
		dst = appendKey(dst, 'h')
		dst = appendInt(dst, e.Batch)
	}
	return append(dst, e.Extra...)
}

// Encode returns e's encoding.
func Encode(e *Envelope) []byte { return Append(make([]byte, 0, 64+len(e.Args)+len(e.Error)), e) }

func appendKey(dst []byte, k byte) []byte { return append(dst, byte(msgpcode.FixedStrLow)|1, k) }

func appendStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		dst = append(dst, byte(msgpcode.FixedStrLow)|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, msgpcode.Str8, byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, msgpcode.Str16, byte(n>>8), byte(n))
	default:
		dst = append(dst, msgpcode.Str32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, s...)
}

func appendBin(dst []byte, b []byte) []byte {
	switch n := len(b); {
	case n <= math.MaxUint8:
		dst = append(dst, msgpcode.Bin8, byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, msgpcode.Bin16, byte(n>>8), byte(n))
	default:
		dst = append(dst, msgpcode.Bin32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, b...)
}

func appendInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= math.MaxInt8:
		return append(dst, byte(v))
	case v < 0 && v >= -32:
		return append(dst, byte(int8(v)))
	case v >= math.MinInt8 && v <= math.MaxInt8:
		return append(dst, msgpcode.Int8, byte(v))
	case v >= math.MinInt16 && v <= math.MaxInt16:
		return append(dst, msgpcode.Int16, byte(v>>8), byte(v))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		return append(dst, msgpcode.Int32, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return append(dst, msgpcode.Int64, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
			byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}

// Decode parses a message. Unknown keys are skipped so that later minor additions
// stay readable; a newer major version is an error.
func Decode(b []byte) (*Envelope, error) {
	e := &Envelope{MaxRetries: -1}
	if err := DecodeInto(b, e); err != nil {
		return nil, err
	}
	return e, nil
}

// DecodeInto parses b into e, which it resets first. e's byte slices alias b.
func DecodeInto(b []byte, e *Envelope) error {
	*e = Envelope{MaxRetries: -1}
	r := reader{b: b}
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	version := -1
	rSet, oSet := false, false
	for ; n > 0; n-- {
		start := r.off
		key, err := r.str()
		if err != nil {
			return err
		}
		k := byte(0) // a longer key is not one of ours
		if len(key) == 1 {
			k = key[0]
		}
		switch k {
		case 'v':
			v, err := r.int()
			if err != nil {
				return err
			}
			version = int(v)
		case 'i':
			e.ID, err = r.strString()
		case 'n':
			e.Name, err = r.strString()
		case 'a':
			start := r.off
			if err = r.skip(); err == nil {
				e.Args = b[start:r.off:r.off]
			}
		case 't':
			e.EnqueuedAt, err = r.int()
		case 'p':
			var v int64
			v, err = r.int()
			e.Priority = clampInt(v)
		case 'r':
			var v int64
			v, err = r.int()
			e.MaxRetries, rSet = clampInt(v), true
		case 'o':
			e.TimeoutMs, err = r.int()
			oSet = true
		case 'x':
			var v int64
			v, err = r.int()
			e.Retried = clampInt(v)
		case 'u':
			var v int64
			v, err = r.int()
			e.Unknown = clampInt(v)
		case 'e':
			e.Error, err = r.strString()
		case 'k':
			e.Stack, err = r.strString()
		case 'l':
			e.LimitKey, err = r.strString()
		case 'b':
			e.Raw, err = r.bin()
		case 'd':
			e.RetentionMs, err = r.int()
		case 'm':
			e.MemoMs, err = r.int()
		case 'h':
			e.Batch, err = r.int()
		default: // kept as raw key/value pairs, aliasing b until a second one
			if err = r.skip(); err == nil {
				if e.Extra == nil {
					e.Extra = b[start:r.off:r.off] // full slice: an append copies
				} else {
					e.Extra = append(e.Extra, b[start:r.off]...)
				}
				e.ExtraN++
			}
		}
		if err != nil {
			return err
		}
	}
	switch {
	case version < 1:
		return fmt.Errorf("%w: no version (v must be 1)", ErrMalformed)
	case version > Version:
		return fmt.Errorf("%w: version %d is newer than this worker's %d", ErrMalformed, version, Version)
	case e.Name == "":
		return fmt.Errorf("%w: no task name", ErrMalformed)
	case r.off != len(b):
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-r.off)
	case e.Priority < MinPriority || e.Priority > MaxPriority:
		return fmt.Errorf("%w: priority p=%d is outside [%d, %d]", ErrMalformed, e.Priority, MinPriority, MaxPriority)
	case e.MaxRetries < -1 || e.MaxRetries > MaxRetries || (e.MaxRetries == -1 && rSet):
		return fmt.Errorf("%w: max retries r=%d is outside [0, %d]", ErrMalformed, e.MaxRetries, MaxRetries)
	case e.TimeoutMs < 0 || e.TimeoutMs > MaxTimeoutMs || (e.TimeoutMs == 0 && oSet):
		return fmt.Errorf("%w: timeout o=%dms is outside [1, %d]", ErrMalformed, e.TimeoutMs, int64(MaxTimeoutMs))
	case e.Retried < 0 || e.Retried > MaxRetries:
		return fmt.Errorf("%w: retries used x=%d is outside [0, %d]", ErrMalformed, e.Retried, MaxRetries)
	case e.Unknown < 0 || e.Unknown > MaxRetries:
		return fmt.Errorf("%w: unknown-task retries u=%d is outside [0, %d]", ErrMalformed, e.Unknown, MaxRetries)
	case e.RetentionMs < 0 || e.RetentionMs > MaxRetentionMs:
		return fmt.Errorf("%w: retention d=%dms is outside [0, %d]", ErrMalformed, e.RetentionMs, int64(MaxRetentionMs))
	case e.Batch < 0:
		return fmt.Errorf("%w: batch h=%d is negative", ErrMalformed, e.Batch)
	case e.MemoMs < 0 || e.MemoMs > MaxRetentionMs:
		return fmt.Errorf("%w: memo ttl m=%dms is outside [0, %d]", ErrMalformed, e.MemoMs, int64(MaxRetentionMs))
	}
	return nil
}

// clampInt narrows v to an int that the range checks reject if v was out of
// range, so that a huge value cannot wrap into a valid-looking one.
func clampInt(v int64) int {
	const lim = 1 << 40
	switch {
	case v > lim:
		return lim
	case v < -lim:
		return -lim
	}
	return int(v)
}

// Complete fills in what a stored record may leave out: its id (the hash field
// it is stored under) and, for a rediq-generated id, its enqueue time (the id's
// first 48 bits). A record whose "i" differs from id, or that has no "t" and a
// caller-chosen id, is malformed.
func Complete(e *Envelope, id string) error {
	switch {
	case e.ID == "":
		e.ID = id
	case e.ID != id:
		return fmt.Errorf("%w: its id %q differs from the id %q it is stored under", ErrMalformed, e.ID, id)
	}
	if e.EnqueuedAt == 0 {
		ms, ok := IDTime(id)
		if !ok {
			return fmt.Errorf("%w: no enqueue time (t), and the id %q is not one rediq generated", ErrMalformed, id)
		}
		e.EnqueuedAt = ms
	}
	return nil
}

// Flow is the flow of a task of type name with limit key key: the lane it
// waits in and the unit its type's limits apply per (docs/PROTOCOL.md §2).
// A name with '|' in it has none: it cannot be told from a key.
func Flow(name, key string) string {
	if strings.IndexByte(name, '|') >= 0 {
		return ""
	}
	if key == "" {
		return name
	}
	return name + "|" + key
}

// Flow is the envelope's flow (the package function Flow).
func (e *Envelope) Flow() string { return Flow(e.Name, e.LimitKey) }
