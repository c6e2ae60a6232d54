package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestMsgpackJSON(t *testing.T) {
	t.Parallel()
	type inner struct{ A int }
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"nil", nil, `null`},
		{"int", -7, `-7`},
		{"string", "<a&b>", `"<a&b>"`},
		{"struct", struct {
			Name string
			In   inner
		}{"x", inner{2}}, `{"In":{"A":2},"Name":"x"}`},
		{"int keys", map[int]string{1: "a", 2: "b"}, `{"1":"a","2":"b"}`},
		{"nested int keys", []any{map[int8]any{1: map[uint]bool{3: true}}}, `[{"1":{"3":true}}]`},
		{"bytes", []byte("hi"), `"aGk="`},
		{"float", 1.5, `1.5`},
		{"NaN", math.NaN(), `"NaN"`},
		{"infinity", []float64{math.Inf(1), math.Inf(-1)}, `["+Inf","-Inf"]`},
		{"float32", float32(0.25), `0.25`},
		{"time", time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), `"2025-03-01T12:00:00Z"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw, err := msgpack.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := msgpackJSON(raw)
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if got, err := msgpackJSON(nil); err != nil || string(got) != "null" {
		t.Errorf("no bytes: %s, %v; want null", got, err)
	}
	if _, err := msgpackJSON([]byte{0xc1}); err == nil {
		t.Errorf("0xc1 (never used in msgpack) decoded")
	}
	if got := jsonValue([]byte{0xc1}); !strings.Contains(string(got), `"msgpack_base64":"wQ=="`) {
		t.Errorf("jsonValue of bad msgpack = %s, want the bytes and the error", got)
	}
}

func TestAge(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{now, "now"},
		{now.Add(-500 * time.Millisecond), "now"},
		{now.Add(-3 * time.Second), "3s ago"},
		{now.Add(-(2*time.Minute + 3*time.Second)), "2m3s ago"},
		{now.Add(-(26*time.Hour + 5*time.Minute + 9*time.Second)), "26h5m ago"},
		{now.Add(-(50 * time.Hour)), "2d2h ago"},
		{now.Add(90 * time.Second), "in 1m30s"},
	} {
		if got := relative(tc.at, now); got != tc.want {
			t.Errorf("relative(now%+v) = %q, want %q", tc.at.Sub(now), got, tc.want)
		}
	}
	if got := localTime(time.Time{}, now); got != "-" {
		t.Errorf("localTime(zero) = %q, want -", got)
	}
	if got, want := localTime(now.Add(-time.Minute), now), now.Add(-time.Minute).Format(timeLayout)+" (1m0s ago)"; got != want {
		t.Errorf("localTime = %q, want %q", got, want)
	}
}
