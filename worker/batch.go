package worker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
)

// batchWatchEvery is how often a worker looks whether the batches of its
// running tasks were stopped (or lost their producer's keep-alive).
const batchWatchEvery = 250 * time.Millisecond

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
			again = time.After(retry.Next())
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

// collectTimeout bounds a Collect call, its retries after connection errors
// included.
const collectTimeout = 10 * time.Second

// batchState sets up st for a task of batch id: Print and Collect.
func (w *Worker) batchState(st *core.State, k *broker.BatchKeys, name string) {
	st.Batch = k.ID
	st.Print = func(line string) {
		w.out.add(k, broker.OutLine{Task: st.ID, Name: name, Worker: w.cfg.Name, Line: line})
	}
	st.Collect = func(table string, rows [][]byte) error {
		// A cut connection must not fail the handler: the rows are sent
		// again until Redis answers or collectTimeout passes (at least once,
		// as output: rows whose reply was lost may be added twice).
		ctx, cancel := context.WithTimeout(w.base, collectTimeout)
		defer cancel()
		retry := backoff.Retrier{Policy: redisRetry}
		for {
			err := w.b.AddRows(ctx, k, table, w.cfg.Name, rows)
			if !broker.Transient(err) || !retry.Pause(ctx, nil, nil) {
				return err
			}
		}
	}
}

// batchStart asks whether a task of batch k may start; if not it is
// finished as cancelled, unstarted, and false is returned.
func (w *Worker) batchStart(j *job, env *codec.Envelope) bool {
	k := w.out.batch(env.Batch)
	ctx, cancel := context.WithTimeout(w.base, 10*time.Second)
	defer cancel()
	reason, err := w.b.BatchStart(ctx, k, j.id)
	if err != nil {
		w.log.Warn("cannot check the task's batch; giving the task back", zap.String("task_id", j.id), zap.Error(err))
		w.settle(j, broker.Requeue, nil, 0)
		return false
	}
	if reason == "" {
		return true
	}
	w.log.Info("batch stopped: task not started", zap.String("task_id", j.id), zap.Int64("batch", k.ID), zap.String("reason", reason))
	w.endStopped(ctx, j, env, nil, broker.EndDropped, reason, nil)
	return false
}

// endStopped ends a task of a stopped batch as cancelled: a cancel request
// (so that settle honours the outcome), the outcome, and the observers (with
// cause, when a running handler was cancelled for it).
func (w *Worker) endStopped(ctx context.Context, j *job, env *codec.Envelope, st *core.State, end broker.BatchEnd, reason string, cause error) {
	if err := w.b.RequestCancel(ctx, j.q.Queue, j.id, "rediq: batch stopped: "+reason); err != nil {
		w.log.Warn("cannot record the cancel of a stopped batch's task", zap.String("task_id", j.id), zap.Error(err))
	}
	w.settleAttempt(j, broker.Cancel, nil, 0, nil)
	w.observe(j, env, st, ending{end: end, stopped: cause})
}

// batchObserver is the batch accounting of the worker's tasks: a batch
// task's handler gets its batch's Print and Collect, its result goes to its
// table, its errors to its output, and its end is counted in the batch.
type batchObserver struct{ w *Worker }

func (o batchObserver) starting(r *run) {
	if r.env.Batch > 0 {
		o.w.batchState(r.st, o.w.out.batch(r.env.Batch), r.env.Name)
	}
}

func (o batchObserver) succeeded(r *run, result any) {
	if r.env.Batch > 0 {
		o.w.collectResult(r.st, r.def, result)
	}
}

func (o batchObserver) ended(j *job, env *codec.Envelope, st *core.State, e ending) {
	if env.Batch == 0 {
		return
	}
	w := o.w
	if st != nil {
		attempt := fmt.Sprintf("task %s (%s) on %s, attempt %d", env.ID, env.Name, w.cfg.Name, env.Retried+1)
		var pe *rediq.PanicError
		switch {
		case e.stopped != nil:
			st.Print(fmt.Sprintf("%s: cancelled: %v", attempt, e.stopped))
		case e.attempt == broker.AttemptFailed && e.err != nil:
			st.Print(fmt.Sprintf("%s: error: %v", attempt, e.err))
			if errors.As(e.err, &pe) {
				st.Print(string(pe.Stack))
			}
		}
	}
	lastErr := ""
	if e.err != nil {
		lastErr = e.err.Error()
	}
	w.noteBatch(w.out.batch(env.Batch), j.id, e.attempt, e.end, lastErr)
}

// noteBatch counts an attempt and an end in the task's batch, after flushing
// the task's output (the batch's end entry must come after its lines), and
// enqueues the batch's OnComplete if this completed it.
func (w *Worker) noteBatch(k *broker.BatchKeys, id string, attempt broker.BatchAttempt, end broker.BatchEnd, lastErr string) {
	ctx, cancel := context.WithTimeout(w.base, 10*time.Second)
	defer cancel()
	if end != broker.EndNone {
		_ = w.out.flush(ctx) // on failure the lines follow the end entry, late
	}
	var completed bool
	var err error
	// Five tries at most: what is not counted by then is logged.
	retry := backoff.Retrier{Policy: redisRetry}
	for {
		if completed, err = w.b.BatchNote(ctx, k, broker.BatchNoteParams{Task: id, Worker: w.cfg.Name,
			Attempt: attempt, End: end, LastError: lastErr}); err == nil || retry.Failures() == 4 || !retry.Pause(ctx, nil, nil) {
			break
		}
	}
	if err != nil {
		w.log.Error("cannot count the task in its batch", zap.Int64("batch", k.ID), zap.String("task_id", id), zap.Error(err))
		return
	}
	if !completed {
		return
	}
	if err := core.EnqueueOnComplete(ctx, w.b, k); err != nil {
		// It stays pending in the batch: the sweep after a heartbeat, or its Wait, enqueues it.
		w.log.Error("batch completed, but its OnComplete could not be enqueued yet", zap.Int64("batch", k.ID), zap.Error(err))
	}
}

// collectResult adds a batch task's result to its table: a row per element
// of a slice or array, else one row.
func (w *Worker) collectResult(st *core.State, def *core.TaskDef, result any) {
	table := def.ResultTable
	if table == "" {
		table = "default"
	}
	var rows [][]byte
	add := func(v any) {
		b, err := msgpack.Marshal(v)
		if err != nil {
			st.Logger().Error("cannot encode a result row for the batch table", zap.String("table", table), zap.Error(err))
			return
		}
		rows = append(rows, b)
	}
	if v := reflect.ValueOf(result); v.IsValid() && (v.Kind() == reflect.Slice || v.Kind() == reflect.Array) && v.Type().Elem().Kind() != reflect.Uint8 {
		for i := range v.Len() {
			add(v.Index(i).Interface())
		}
	} else {
		add(result)
	}
	if err := st.Collect(table, rows); err != nil {
		st.Logger().Error("cannot add the result to the batch table", zap.String("table", table), zap.Error(err))
	}
}

// batchWatcher cancels running handlers of batches that were stopped, or
// whose producer stopped sending keep-alives (it stops those).
func (w *Worker) batchWatcher(stop <-chan struct{}) {
	t := time.NewTicker(batchWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		running := map[int64]bool{}
		for _, a := range w.running() {
			if a.env.Batch > 0 {
				running[a.env.Batch] = true
			}
		}
		for id := range running {
			ctx, cancel := context.WithTimeout(w.base, time.Second)
			reason, err := w.batchStopped(ctx, w.out.batch(id))
			cancel()
			if err != nil || reason == "" {
				continue
			}
			w.cancelRunning(fmt.Errorf("%w: %s", rediq.ErrBatchStopped, reason), func(sl *slot) bool {
				return sl.running.j != nil && sl.running.env.Batch == id
			})
		}
	}
}

// batchStopped returns why batch k is stopped, "" if it runs; a keep-alive
// batch without keep-alives is stopped here.
func (w *Worker) batchStopped(ctx context.Context, k *broker.BatchKeys) (string, error) {
	l, err := w.b.BatchLiveness(ctx, k)
	if err != nil || l.StopReason != "" || !l.Abandoned() {
		return l.StopReason, err
	}
	const reason = "its producer stopped sending keep-alives"
	if _, err := w.b.StopBatch(ctx, k, reason); err != nil {
		return "", err
	}
	return reason, nil
}

// sweepBatches ends batches whose producer went away when no task of theirs
// was running or starting (after every heartbeat; the newest 100 batches):
// keep-alive ones are stopped, detached ones whose tasks have all ended
// complete (their OnComplete is enqueued here, as is one still pending).
func (w *Worker) sweepBatches(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	sw, err := w.b.SweepBatches(cctx, 100)
	if err != nil { // some or all batches; those swept are reported still
		w.log.Debug("could not sweep every abandoned batch", zap.Error(err))
	}
	if sw.Stopped > 0 {
		w.log.Info("stopped batches whose producer went away", zap.Int("batches", sw.Stopped))
	}
	for _, k := range sw.OnComplete {
		if err := core.EnqueueOnComplete(cctx, w.b, k); err != nil {
			// Still pending: the next sweep tries again.
			w.log.Warn("batch completed, but its OnComplete could not be enqueued yet", zap.Int64("batch", k.ID), zap.Error(err))
		}
	}
}
