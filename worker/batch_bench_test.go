package worker

import (
	"context"
	"testing"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/core"
)

// BenchmarkPrint is what rediq.Print costs a handler in a batch: the line is
// queued for the output flusher (which sends it, coalesced, elsewhere).
func BenchmarkPrint(b *testing.B) {
	w := &Worker{b: broker.New(nil, "bench"), log: zap.NewNop()}
	w.out.init(w)
	st := &core.State{ID: "00d21hx9avrcn21570rg", Log: zap.NewNop()}
	w.batchState(st, w.out.batch(1), "task")
	ctx := core.WithState(context.Background(), st)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rediq.Printf(ctx, "processed item %d of the batch", i)
		if i++; i%4096 == 0 { // what the flusher would have taken
			w.out.mu.Lock()
			clear(w.out.lines)
			w.out.mu.Unlock()
		}
	}
}
