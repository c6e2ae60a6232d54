package testredis

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []string // each one top-level value
	}{
		{name: "simple", values: []string{"+OK\r\n", "-ERR no\r\n", ":42\r\n", "+\r\n"}},
		{name: "long line", values: []string{"+" + strings.Repeat("a", 100) + "\r\n"}},
		{name: "bulk", values: []string{"$5\r\nhe\r\no\r\n", "$0\r\n\r\n", "$-1\r\n"}},
		{name: "arrays", values: []string{"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "*0\r\n", "*-1\r\n"}},
		{name: "RESP3 scalars", values: []string{"_\r\n", "#t\r\n", ",1.5\r\n", "(12345678901234567890\r\n",
			"!3\r\nerr\r\n", "=7\r\ntxt:abc\r\n"}},
		{name: "RESP3 aggregates", values: []string{"%1\r\n+k\r\n*1\r\n+v\r\n", "~2\r\n:1\r\n:2\r\n",
			">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"}},
		{name: "attribute with its value", values: []string{"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", "+next\r\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// One byte at a time through the smallest buffer: every value is
			// split, and long lines overflow the buffer.
			r := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(strings.Join(tt.values, ""))), 16)
			for _, want := range tt.values {
				got, err := readValue(r, nil)
				if err != nil || string(got) != want {
					t.Fatalf("readValue = %q, %v; want %q", got, err, want)
				}
			}
			if got, err := readValue(r, nil); !errors.Is(err, io.EOF) {
				t.Fatalf("readValue at the end = %q, %v; want EOF", got, err)
			}
		})
	}
}

func TestReadValueRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{name: "unknown type", in: "?x\r\n"},
		{name: "bare LF", in: "+OK\n"},
		{name: "empty line", in: "\r\n"},
		{name: "bad length", in: "$x\r\n"},
		{name: "negative length", in: "*-2\r\n"},
		{name: "streamed string", in: "$?\r\n"},
		{name: "bulk without CRLF", in: "$2\r\nabXY"},
		{name: "truncated bulk", in: "$5\r\nab"},
		{name: "truncated array", in: "*2\r\n:1\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, err := readValue(bufio.NewReader(strings.NewReader(tt.in)), nil); err == nil {
				t.Fatalf("readValue(%q) = %q; want an error", tt.in, got)
			}
		})
	}
}
