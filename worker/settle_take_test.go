package worker

import (
	"testing"

	"github.com/rediq/rediq/internal/broker"
)

// A start mark queued with its task's outcome is not sent: the outcome goes
// in the same call and releases the lease, so the mark would cost Redis an
// outcome for nothing. A mark whose outcome is not queued yet goes, and so
// does a mark someone waits for (a recovered task's).
func TestTakeDropsAMarkItsOutcomeFollows(t *testing.T) {
	t.Parallel()
	var s settler
	s.signal = make(chan struct{}, 1)
	short, long, recovered := &job{id: "short"}, &job{id: "long"}, &job{id: "recovered"}
	item := func(j *job, o broker.Outcome) settleItem {
		return settleItem{s: broker.Settlement{ID: j.id, Outcome: o}, j: j}
	}
	s.push(item(short, broker.Start))
	s.push(item(long, broker.Start))
	s.push(settleItem{s: broker.Settlement{ID: recovered.id, Outcome: broker.Start}, j: recovered, mark: make(chan bool, 1)})
	s.push(item(short, broker.Ack))
	s.push(item(recovered, broker.Ack))
	got := s.take()
	var ids []string
	for _, it := range got {
		ids = append(ids, it.s.ID+":"+string(rune('0'+it.s.Outcome)))
	}
	if len(got) != 4 || got[0].s.ID != "long" || got[0].s.Outcome != broker.Start ||
		got[1].s.ID != "recovered" || got[1].mark == nil ||
		got[2].s.ID != "short" || got[2].s.Outcome != broker.Ack || got[3].s.ID != "recovered" {
		t.Fatalf("took %v; want long's mark, recovered's awaited mark, short's ack, recovered's ack", ids)
	}
	// The long task's outcome comes in a later flush: its mark went before.
	s.push(item(long, broker.Ack))
	if got := s.take(); len(got) != 1 || got[0].s.Outcome != broker.Ack {
		t.Fatalf("took %+v, want long's ack alone", got)
	}
}
