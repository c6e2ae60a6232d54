package codec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	args, _ := msgpack.Marshal(map[string]any{"user_id": 12345, "action": "send_welcome_email"})
	cases := map[string]Envelope{
		"minimal":   {ID: "a", Name: "n", MaxRetries: -1},
		"typical":   {ID: NewID(time.Now()), Name: "resize", Args: args, EnqueuedAt: 1700000000123, MaxRetries: -1},
		"overrides": {ID: "x", Name: "y", Args: args, Priority: -7, MaxRetries: 0, TimeoutMs: 90000, Retried: 2},
		"dead":      {ID: "x", Name: "y", MaxRetries: 5, Error: strings.Repeat("e", 300), Stack: strings.Repeat("s", 70000), Raw: []byte{0xc1, 0}},
		"bigints":   {ID: "x", Name: "y", EnqueuedAt: -1 << 40, Priority: 2047, MaxRetries: 1 << 19, TimeoutMs: 1 << 33},
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			b := Encode(&in)
			out, err := Decode(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(*out, in) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", *out, in)
			}
			// Any msgpack library must read it as a plain map.
			var m map[string]any
			if err := msgpack.Unmarshal(b, &m); err != nil {
				t.Fatalf("generic msgpack decode: %v", err)
			}
			if m["i"] != in.ID || m["n"] != in.Name {
				t.Fatalf("generic decode sees %v", m)
			}
		})
	}
}

// A producer in another language writes the map with its own library, in its own
// key order and integer widths.
func TestDecodeForeignEncoding(t *testing.T) {
	t.Parallel()
	b, err := msgpack.Marshal(map[string]any{
		"n": "resize", "a": map[string]any{"w": 100}, "t": uint64(1700000000000),
		"v": 1, "i": "abc", "p": int64(3), "future": []any{1, "x", nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Decode(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if e.ID != "abc" || e.Name != "resize" || e.Priority != 3 || e.EnqueuedAt != 1700000000000 || e.MaxRetries != -1 {
		t.Fatalf("decoded %+v", e)
	}
	var args map[string]int
	if err := msgpack.Unmarshal(e.Args, &args); err != nil || args["w"] != 100 {
		t.Fatalf("args %v, %v", args, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	newer, _ := msgpack.Marshal(map[string]any{"v": 2, "i": "a", "n": "b"})
	noName, _ := msgpack.Marshal(map[string]any{"v": 1, "i": "a"})
	good := Encode(&Envelope{ID: "a", Name: "b", EnqueuedAt: 5, MaxRetries: -1})
	cases := map[string]struct {
		in   []byte
		want string
	}{
		"empty":    {nil, "unexpected end"},
		"garbage":  {[]byte("hello, world"), "want a map"},
		"newer":    {newer, "version 2 is newer"},
		"no name":  {noName, "no task name"},
		"trailing": {append(good, 0), "trailing"},
		"cut":      {good[:len(good)-1], "unexpected end"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(c.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrMalformed mentioning %q", err, c.want)
			}
		})
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	t.Parallel()
	a := NewID(time.UnixMilli(1700000000000))
	b := NewID(time.UnixMilli(1700000000001))
	if len(a) != 20 || a >= b {
		t.Fatalf("ids %q, %q", a, b)
	}
	seen := map[string]bool{}
	for range 10000 {
		id := NewID(time.UnixMilli(1))
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(&Envelope{ID: "a", Name: "b", Args: []byte{0x91, 0x01}, MaxRetries: 2, Error: "x"}))
	f.Add([]byte{0x81, 0xa1, 'a', 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(Encode(e))
		if err != nil {
			t.Fatalf("re-decode of a decoded message: %v", err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("re-encode changed the message:\n%+v\n%+v", again, e)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	args, _ := msgpack.Marshal(map[string]any{"user_id": 12345, "action": "send_welcome_email", "ts": 1700000000})
	e := &Envelope{ID: NewID(time.Now()), Name: "noop", Args: args, EnqueuedAt: 1700000000000, MaxRetries: -1}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], e)
	}
	b.ReportMetric(float64(len(buf)), "bytes/msg")
}

func BenchmarkDecode(b *testing.B) {
	args, _ := msgpack.Marshal(map[string]any{"user_id": 12345, "action": "send_welcome_email", "ts": 1700000000})
	msg := Encode(&Envelope{ID: NewID(time.Now()), Name: "noop", Args: args, EnqueuedAt: 1700000000000, MaxRetries: -1})
	var e Envelope
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeInto(msg, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// Values that would corrupt a score, a shift or a timer make a message
// malformed; a producer in another language finds out from the dead set.
func TestDecodeRejectsOutOfRangeValues(t *testing.T) {
	t.Parallel()
	base := func() map[string]any { return map[string]any{"v": 1, "i": "id", "n": "task", "t": 1} }
	cases := map[string]func(m map[string]any){
		"no version":     func(m map[string]any) { delete(m, "v") },
		"version 0":      func(m map[string]any) { m["v"] = 0 },
		"version 2":      func(m map[string]any) { m["v"] = 2 },
		"no name":        func(m map[string]any) { delete(m, "n") },
		"priority high":  func(m map[string]any) { m["p"] = 2048 },
		"priority low":   func(m map[string]any) { m["p"] = -2049 },
		"retries -1":     func(m map[string]any) { m["r"] = -1 },
		"retries huge":   func(m map[string]any) { m["r"] = int64(1) << 40 },
		"timeout 0":      func(m map[string]any) { m["o"] = 0 },
		"timeout -5":     func(m map[string]any) { m["o"] = -5 },
		"timeout 2y":     func(m map[string]any) { m["o"] = int64(2 * 365 * 24 * 3600 * 1000) },
		"x negative":     func(m map[string]any) { m["x"] = -1 },
		"x wraps an int": func(m map[string]any) { m["x"] = int64(1) << 62 },
		"u negative":     func(m map[string]any) { m["u"] = -1 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := base()
			mutate(m)
			b, err := msgpack.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("decoded without error (%v)", err)
			}
		})
	}
	b, _ := msgpack.Marshal(base())
	if e, err := Decode(b); err != nil || e.Args != nil {
		t.Fatalf("a message without arguments: %+v, %v", e, err)
	}
}

// Keys a newer producer added survive a worker's re-encoding for a retry.
func TestUnknownKeysAreKept(t *testing.T) {
	t.Parallel()
	m := map[string]any{"v": 1, "i": "id", "n": "task", "t": 1, "z": "zz", "batch": 42, "y": []int{1, 2}}
	b, _ := msgpack.Marshal(m)
	e, err := Decode(b)
	if err != nil || e.ExtraN != 3 {
		t.Fatalf("decode: %+v, %v", e, err)
	}
	e.Retried = 1
	var out map[string]any
	if err := msgpack.Unmarshal(Encode(e), &out); err != nil {
		t.Fatal(err)
	}
	if out["z"] != "zz" || out["batch"] != int8(42) || out["x"] != int8(1) || len(out["y"].([]any)) != 2 {
		t.Fatalf("re-encoded as %v", out)
	}
}

func TestIDTime(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1763884800123)
	for range 100 {
		id := NewID(now)
		if ms, ok := IDTime(id); !ok || ms != now.UnixMilli() {
			t.Fatalf("IDTime(%s) = %d, %v", id, ms, ok)
		}
	}
	for _, bad := range []string{"", "order-123", "zzzzzzzzzzzzzzzzzzzz", "00d21fgqcndhnz17nysU", "0000000000000000000a"} {
		if ms, ok := IDTime(bad); ok {
			t.Errorf("IDTime(%q) = %d, true", bad, ms)
		}
	}
	e := &Envelope{Name: "x"}
	if err := Complete(e, "order-1"); !errors.Is(err, ErrMalformed) {
		t.Errorf("no time and a chosen id: %v", err)
	}
}
