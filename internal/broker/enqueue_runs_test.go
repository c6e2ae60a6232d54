package broker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rediq/rediq/internal/broker"
)

// Tasks pending now without options go to enqueue.lua as runs of one lane.
// An id that exists is skipped; an id twice in one call is the first of the
// two, with its own message, wherever the second falls (the same thousand of
// a run, a later thousand, another run); the lanes keep the call's order.
func TestEnqueueRunsKeepTheFirstOfAnID(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("old", 2048))
	var msgs []broker.Message
	var want []string // pending after, in order (slot 2000 first, then 2048)
	body := func(id string, n int) []byte { return []byte(fmt.Sprintf("body-%s-%d", id, n)) }
	add := func(id string, slot int, flow string, n int) {
		msgs = append(msgs, broker.Message{ID: id, Slot: slot, Flow: flow, Body: body(id, n)})
	}
	add("a", 2048, "", 1)
	add("old", 2048, "", 1) // exists
	add("a", 2048, "", 2)   // same thousand
	for i := range 2500 {   // across three thousands of one run
		add(fmt.Sprintf("t%04d", i), 2048, "", 1)
	}
	add("t0005", 2048, "", 2) // a later thousand than its first
	add("b", 2000, "f", 1)    // another lane, another run
	add("a", 2000, "f", 3)    // an id of an earlier run
	add("b", 2000, "f", 2)
	st, err := b.Enqueue(ctx, q, msgs)
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for _, s := range st {
		got.WriteByte(byte(s.Code))
	}
	wantSt := "100" + strings.Repeat("1", 2500) + "0" + "100"
	if got.String() != wantSt {
		t.Fatalf("statuses differ at %d (of %d): %q", firstDiff(got.String(), wantSt), len(wantSt), got.String()[:8])
	}
	for _, c := range []struct {
		id   string
		body []byte
	}{{"a", body("a", 1)}, {"b", body("b", 1)}, {"t0005", body("t0005", 1)}, {"old", []byte("body-old")}} {
		if v, err := rdb.HGet(ctx, q.Records, c.id).Bytes(); err != nil || string(v) != string(c.body) {
			t.Fatalf("record of %s = %q, %v; want %q", c.id, v, err, c.body)
		}
	}
	want = append(want, "b", "old", "a")
	for i := range 2500 {
		want = append(want, fmt.Sprintf("t%04d", i))
	}
	if p := pendingIDs(t, b, q); !slices.Equal(p, want) {
		t.Fatalf("pending: %d ids, first %v; want %d, first %v", len(p), p[:min(4, len(p))], len(want), want[:4])
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A malformed runs call is refused before it writes anything; so is a call
// of the other form whose first id is empty (its ARGV[5] is "" too, and with a
// delay of 1 it would parse as a run of one task: the runs form opens with
// "" "runs" so that it cannot).
func TestEnqueueRunsRefusesMalformedCalls(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	src := mustRead(t, "scripts/enqueue.lua")
	keys := []string{q.Records, q.Pending, q.Scheduled, q.Seq}
	for _, c := range []struct {
		name string
		runs []any
		want string // in the error
	}{
		{"count past the end", []any{"", "runs", "2048", 2, "x", "bx"}, ""},
		{"no count", []any{"", "runs", "2048"}, ""},
		{"count 0", []any{"", "runs", "2048", 0}, ""},
		{"bad slot", []any{"", "runs", "5000", 1, "x", "bx"}, ""},
		{"empty flow", []any{"", "runs", "2048|", 1, "x", "bx"}, ""},
		{"empty id", []any{"", "runs", "2048", 2, "x", "bx", "", "b"}, "empty task id"},
		{"a second run cut short", []any{"", "runs", "2048", 1, "x", "bx", "2048", 2, "z", "bz"}, ""},
		// The other form with an empty first id is not a runs call.
		{"five per task, the first id empty", []any{"", "2048", 1, "\x83\xa1v\x01\xa1n\xa1x\xa1a\xc0", ""}, "empty task id"},
		{"five per task, the first id empty, delay 0", []any{"", "2048", 0, "msg", ""}, "empty task id"},
	} {
		args := append([]any{q.Channel, 0, broker.Epoch, q.Prefix}, c.runs...)
		want := c.want
		if want == "" {
			want = "rediq:"
		}
		if err := rdb.Eval(ctx, src, keys, args...).Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error with %q", c.name, err, want)
		}
	}
	if n, err := rdb.HLen(ctx, q.Records).Result(); err != nil || n != 0 {
		t.Fatalf("records after refused calls: %d, %v", n, err)
	}
	if p := pendingIDs(t, b, q); len(p) != 0 {
		t.Fatalf("pending after refused calls: %v", p)
	}
}
