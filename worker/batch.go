package worker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
)

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
