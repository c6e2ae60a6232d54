package worker

import (
	"context"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/core"
)

// Every worker fires the App's schedules (App.Schedule) unless
// Config.DisableSchedules: a goroutine per schedule sleeps until its next tick
// and fires it with cron_fire (broker.FireCron), which claims the tick and
// enqueues its task in one script. However many workers fire a schedule, each
// tick fires once; a worker fires the ticks in order, so no worker claims a
// tick past one that nobody fired while it lived.

// cronLate is how late a tick may be fired as a tick of its own: a worker that
// wakes later than this (every worker was down, or frozen) treats the ticks
// it slept through as missed and follows the schedule's catch-up policy.
const cronLate = 5 * time.Second

type cronService struct{ *loop }

func newCronService(w *Worker) cronService { return cronService{newLoop(w.cronRun)} }

func (w *Worker) cronRun(ctx context.Context, stop <-chan struct{}) {
	if w.cfg.DisableSchedules {
		return
	}
	defs := w.app.Schedules()
	if len(defs) == 0 {
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-rctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for _, d := range defs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.cronLoop(rctx, d)
		}()
	}
	wg.Wait()
}

// cronLoop fires schedule d's ticks until ctx ends.
func (w *Worker) cronLoop(ctx context.Context, d *core.ScheduleDef) {
	log := w.log.With(zap.String("schedule", d.ID))
	q := w.b.Queue(d.Queue)
	// Declare it for tools without code, and read where it stands.
	var last int64
	retry := backoff.Retrier{Policy: redisRetry}
	for {
		err := w.b.DeclareCron(ctx, map[string]string{d.ID: d.Declared})
		if err == nil {
			var sts []broker.CronStatus
			sts, err = w.b.CronStatuses(ctx, []*broker.Queue{q}, []string{d.ID})
			if err == nil {
				last = sts[0].Last
				break
			}
		}
		log.Warn("schedule: cannot read its state; trying again", zap.Error(err))
		if !retry.Pause(ctx, nil, nil) {
			return
		}
	}
	// Go on from the last tick claimed, firing in order what is due — unless
	// the tick after it is long past: every worker was down (an outage), and
	// what was missed follows the catch-up policy.
	now := w.clock.Now()
	cursor := now
	if last > 0 {
		from := time.UnixMilli(last)
		if next := d.Spec.Next(from); !next.IsZero() && now.Sub(cronDue(d, next)) <= cronLate {
			cursor = from
		} else if prev, ok := d.Spec.Prev(now); ok && prev.After(from) {
			switch {
			case cronDue(d, prev).After(now): // not missed: its jitter is not over
				cursor = prev.Add(-time.Nanosecond)
			case d.CatchUpLatest:
				log.Info("schedule: firing the latest tick missed while no worker fired it", zap.Time("tick", prev))
				w.cronFire(ctx, log, d, q, prev)
			}
		}
	}
	for {
		next := d.Spec.Next(cursor)
		if next.IsZero() {
			log.Info("schedule: no tick ahead")
			return
		}
		at := cronDue(d, next)
		// Waits are cut to a minute: timers run on the monotonic clock, and
		// the wall clock (the ticks') may be set meanwhile.
		for wait := at.Sub(w.clock.Now()); wait > 0; wait = at.Sub(w.clock.Now()) {
			t := w.clock.NewTimer(min(wait, time.Minute))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		}
		now := w.clock.Now()
		if now.Sub(at) > cronLate {
			// Slept through ticks (frozen, or the machine was): what the
			// schedule missed follows its catch-up policy.
			if prev, ok := d.Spec.Prev(now); ok && d.CatchUpLatest {
				w.cronFire(ctx, log, d, q, prev)
			}
			cursor = now
			continue
		}
		w.cronFire(ctx, log, d, q, next)
		cursor = next
	}
}

// cronDue is when d's tick fires: the tick, delayed by the schedule's
// jitter — the same in every process (derived from the id and the tick), and
// shorter than the gap to the next tick, so that ticks still fire in order.
func cronDue(d *core.ScheduleDef, tick time.Time) time.Time {
	if d.Jitter <= 0 {
		return tick
	}
	span := d.Jitter
	if next := d.Spec.Next(tick); !next.IsZero() {
		span = min(span, next.Sub(tick))
	}
	h := fnv.New64a()
	h.Write([]byte(d.ID))
	h.Write([]byte(strconv.FormatInt(tick.UnixMilli(), 10)))
	return tick.Add(time.Duration(h.Sum64() % uint64(span)))
}

// cronFire fires tick, retrying what Redis did not answer (a re-sent fire
// claims nothing twice) until it is done or too late.
func (w *Worker) cronFire(ctx context.Context, log *zap.Logger, d *core.ScheduleDef, q *broker.Queue, tick time.Time) {
	id := core.TickTaskID(d.ID, tick.UnixMilli())
	m, err := d.Message(w.clock.Now(), id)
	if err != nil {
		log.Error("schedule: cannot make the task", zap.Error(err))
		return
	}
	retry := backoff.Retrier{Policy: redisRetry}
	for {
		r, err := w.b.FireCron(ctx, q, d.ID, tick.UnixMilli(), d.Skip, m)
		if err == nil {
			switch r {
			case broker.CronFired:
				log.Debug("schedule fired", zap.Time("tick", tick), zap.String("task_id", id))
			case broker.CronSkipped:
				log.Info("schedule: tick skipped, the previous task has not finished", zap.Time("tick", tick))
			}
			return
		}
		if w.clock.Now().Sub(tick) > cronLate+time.Minute {
			log.Error("schedule: cannot fire the tick; giving up on it", zap.Time("tick", tick), zap.Error(err))
			return
		}
		log.Warn("schedule: cannot fire the tick; trying again", zap.Time("tick", tick), zap.Error(err))
		if !retry.Pause(ctx, nil, nil) {
			return
		}
	}
}
