package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/broker"
)

// ReadBatch gives the counts batch_note.lua and batch_rows.lua keep as typed
// fields: ends, and per worker executed ("x:"), failed ("f:") and collected
// ("c:") — "x" there is executed, not the "expired" of a finished record.
func TestReadBatchTypesTheCounts(t *testing.T) {
	t.Parallel()
	b, _, _ := setup(t)
	ctx := context.Background()
	k, err := b.NewBatch(ctx, broker.BatchInfo{Detached: true, KeepAlive: time.Minute, Retention: time.Hour, OnComplete: []byte("call")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddMembers(ctx, k, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := b.BatchStart(ctx, k, id); err != nil {
			t.Fatal(err)
		}
	}
	notes := []broker.BatchNoteParams{
		{Task: "a", Worker: "w1", Attempt: broker.AttemptFailed},
		{Task: "a", Worker: "w1", Attempt: broker.AttemptRan, End: broker.EndSucceeded},
		{Task: "b", Worker: "w2", Attempt: broker.AttemptFailed, End: broker.EndFailed, LastError: "boom"},
	}
	for _, n := range notes {
		if _, err := b.BatchNote(ctx, k, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AddRows(ctx, k, "t", "w1", [][]byte{[]byte("r1"), []byte("r2")}); err != nil {
		t.Fatal(err)
	}
	s, err := b.ReadBatch(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Detached || s.Created.IsZero() || !s.Completed.IsZero() || s.StopReason != "" ||
		s.Enqueued != 3 || s.Started != 2 || s.Succeeded != 1 || s.Failed != 1 || s.Rows != 2 {
		t.Errorf("state %+v", s)
	}
	w1, w2 := s.Workers["w1"], s.Workers["w2"]
	if w1 == nil || *w1 != (broker.WorkerCounts{Executed: 2, Failed: 1, Collected: 2}) ||
		w2 == nil || *w2 != (broker.WorkerCounts{Executed: 1, Failed: 1}) {
		t.Errorf("workers w1 %+v, w2 %+v", w1, w2)
	}
	if ok, err := b.BatchStarted(ctx, k, "b"); err != nil || !ok {
		t.Errorf("BatchStarted(b) = %v, %v", ok, err)
	}
	if ok, err := b.BatchStarted(ctx, k, "c"); err != nil || ok {
		t.Errorf("BatchStarted(c) = %v, %v", ok, err)
	}
	if c, ok, err := b.OnCompleteCall(ctx, k); err != nil || !ok || string(c.Call) != "call" || c.Retention != time.Hour {
		t.Errorf("OnCompleteCall = %+v, %v, %v", c, ok, err)
	}
	if tables, err := b.BatchTables(ctx, k); err != nil || len(tables) != 1 || tables[0] != "t" {
		t.Errorf("BatchTables = %v, %v", tables, err)
	}
	if ok, err := b.BatchExists(ctx, b.Batch(k.ID+1000)); err != nil || ok {
		t.Errorf("BatchExists(unknown) = %v, %v", ok, err)
	}
}

// An OutputReader reads the stream in order from the start, or only what
// comes after SkipToEnd; the end entry of a stopped batch says so.
func TestOutputReader(t *testing.T) {
	t.Parallel()
	b, _, _ := setup(t)
	ctx := context.Background()
	k, err := b.NewBatch(ctx, broker.BatchInfo{KeepAlive: time.Minute, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	line := func(s string) map[*broker.BatchKeys][]broker.OutLine {
		return map[*broker.BatchKeys][]broker.OutLine{k: {{Task: "t", Worker: "w", Line: s}}}
	}
	if err := b.AppendOutput(ctx, line("one")); err != nil {
		t.Fatal(err)
	}
	late := b.OutputReader(k)
	if err := late.SkipToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendOutput(ctx, line("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.StopBatch(ctx, k, "test"); err != nil {
		t.Fatal(err)
	}
	all, err := b.OutputReader(k).Read(ctx, 0)
	if err != nil || len(all) != 3 || all[0].Line != "one" || all[1].Line != "two" || all[1].Kind != broker.OutText ||
		all[2].Kind != broker.OutEnd || !all[2].Stopped() || all[1].Stopped() {
		t.Fatalf("from the start: %+v, %v", all, err)
	}
	after, err := late.Read(ctx, 0)
	if err != nil || len(after) != 2 || after[0].Line != "two" {
		t.Fatalf("after SkipToEnd: %+v, %v", after, err)
	}
	if more, err := late.Read(ctx, 0); err != nil || len(more) != 0 {
		t.Fatalf("read again: %+v, %v", more, err)
	}
	if newest, err := late.Newest(ctx); err != nil || newest != all[2].ID {
		t.Errorf("Newest = %q, %v; want %q", newest, err, all[2].ID)
	}
}
