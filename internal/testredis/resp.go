package testredis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// maxBulk is Redis's own limit on a bulk string (proto-max-bulk-len).
const maxBulk = 512 << 20

// readValue reads one top-level RESP2 or RESP3 value from r and appends its
// bytes, unchanged, to buf. The proxy uses it to count replies, not chunks.
// An attribute (|) is read together with the value it annotates. Streamed
// strings and aggregates (length ?), which Redis does not send, are an error.
func readValue(r *bufio.Reader, buf []byte) ([]byte, error) {
	start := len(buf)
	buf, err := readLine(r, buf)
	if err != nil {
		return buf, err
	}
	if len(buf)-start < 3 || buf[len(buf)-2] != '\r' {
		return buf, fmt.Errorf("resp: bad line %q", buf[start:])
	}
	line := buf[start : len(buf)-2]
	kind := line[0]
	switch kind {
	case '+', '-', ':', '_', '#', ',', '(':
		return buf, nil
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n < -1 {
		return buf, fmt.Errorf("resp: bad length in %q", line)
	}
	switch kind {
	case '$', '!', '=': // bulk string, bulk error, verbatim string
		if n < 0 {
			return buf, nil
		}
		if n > maxBulk {
			return buf, fmt.Errorf("resp: bulk of %d bytes", n)
		}
		at := len(buf)
		buf = slices.Grow(buf, n+2)[:at+n+2]
		if _, err := io.ReadFull(r, buf[at:]); err != nil {
			return buf, err
		}
		if !bytes.HasSuffix(buf, []byte("\r\n")) {
			return buf, errors.New("resp: bulk not followed by CRLF")
		}
		return buf, nil
	case '*', '~', '>': // array, set, push
	case '%': // map: n keys and n values
		n *= 2
	case '|': // attribute: n pairs, then the value they annotate
		n = 2*n + 1
	default:
		return buf, fmt.Errorf("resp: unknown type %q", kind)
	}
	for i := 0; i < n; i++ {
		if buf, err = readValue(r, buf); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// readLine appends one line, up to and including its '\n'.
func readLine(r *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		chunk, err := r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		return buf, err
	}
}
