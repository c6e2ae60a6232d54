package worker

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
)

// output coalesces the lines handlers print into their batches' output
// streams: a flusher sends what piled up while the last send was in flight.
type output struct {
	w      *Worker
	mu     sync.Mutex
	lines  map[*broker.BatchKeys][]broker.OutLine
	keys   map[int64]*broker.BatchKeys
	signal chan struct{}
	sendMu sync.Mutex // one send at a time, so that lines keep their order
}

func (o *output) init(w *Worker) {
	o.w = w
	o.lines = map[*broker.BatchKeys][]broker.OutLine{}
	o.keys = map[int64]*broker.BatchKeys{}
	o.signal = make(chan struct{}, 1)
}

func (o *output) batch(id int64) *broker.BatchKeys {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := o.keys[id]
	if k == nil {
		k = o.w.b.Batch(id)
		o.keys[id] = k
	}
	return k
}

func (o *output) add(k *broker.BatchKeys, l broker.OutLine) {
	o.mu.Lock()
	o.lines[k] = append(o.lines[k], l)
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// maxBufferedLines bounds the output a worker holds while Redis is away;
// past it the oldest lines are dropped (and counted in the log).
const maxBufferedLines = 100_000

// flush sends what is buffered now. On failure the lines go back to the front
// of the buffer (bounded: the oldest are dropped past maxBufferedLines) and the
// error is returned; the loop tries again. A send whose reply was lost may be
// applied twice: output is at least once.
func (o *output) flush(ctx context.Context) error {
	o.sendMu.Lock()
	defer o.sendMu.Unlock()
	o.mu.Lock()
	lines := o.lines
	if len(lines) == 0 {
		o.mu.Unlock()
		return nil
	}
	o.lines = map[*broker.BatchKeys][]broker.OutLine{}
	o.mu.Unlock()
	err := o.w.b.AppendOutput(ctx, lines)
	if err == nil {
		return nil
	}
	o.mu.Lock()
	dropped := 0
	for k, ls := range lines {
		merged := append(ls, o.lines[k]...)
		if over := len(merged) - maxBufferedLines; over > 0 {
			merged, dropped = merged[over:], dropped+over
		}
		o.lines[k] = merged
	}
	o.mu.Unlock()
	if dropped > 0 {
		o.w.log.Warn("batch output dropped while Redis is unreachable", zap.Int("lines", dropped), zap.Error(err))
	}
	return err
}

func (o *output) loop(ctx context.Context, stop <-chan struct{}) {
	retry := backoff.Retrier{Policy: redisRetry}
	var again <-chan time.Time // after a failure: when to send again
	for {
		select {
		case <-o.signal:
			if again != nil {
				continue // waiting out the backoff; the retry sends it
			}
		case <-again:
		case <-stop:
			o.final(ctx)
			return
		}
		if err := o.flush(ctx); err != nil {
			o.w.log.Debug("batch output: send failed; retrying", zap.Error(err))
			again = o.w.clock.After(retry.Next())
		} else {
			retry.Reset()
			again = nil
		}
	}
}

// final sends what is left when the worker stops: a few more tries, bounded,
// then what is left is lost (logged).
func (o *output) final(ctx context.Context) {
	retry := backoff.Retrier{Policy: redisRetry}
	for range 5 {
		if o.flush(ctx) == nil {
			return
		}
		time.Sleep(retry.Next())
	}
	o.w.log.Warn("batch output not sent before the worker stopped")
}

// outputService sends the batch output lines; its stop flushes what is left.
type outputService struct{ *loop }

func newOutputService(w *Worker) outputService { return outputService{newLoop(w.out.loop)} }
