package rediq

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/window"
)

// pauseAckWait bounds how long PauseQueue waits for a live worker session to
// acknowledge: a worker of this version does within a heartbeat (a third of
// its LeaseTTL, 15 s by default) even when it missed the pause's message. It
// waits longer for sessions whose lease deadline is further away (a long
// LeaseTTL): until that deadline, and pauseAckMargin.
const (
	pauseAckWait   = 30 * time.Second
	pauseAckMargin = 5 * time.Second
)

// PauseQueue pauses queue on every worker: when it returns, no task of the
// queue starts anywhere until ResumeQueue. Tasks already running finish;
// prefetched ones go back to the queue unstarted (no attempt is counted);
// producers still enqueue, and a worker started later stays paused, as does a
// worker that restarts. The pause is kept in Redis: it outlives every process.
//
// It waits until each live worker session serving the queue has said that it
// applied the pause (a worker whose lease has run out starts nothing and is
// not waited for). A session that does not say so within 30 s (or its lease
// deadline, if later) — a worker of a version before pauses — makes it
// return an error naming the sessions; the queue stays paused for every
// worker that knows pauses.
func (a *App) PauseQueue(ctx context.Context, queue string) error {
	if err := CheckQueueName(queue); err != nil {
		return err
	}
	b := a.core.Broker()
	q := b.Queue(queue)
	id, err := b.Pause(ctx, q)
	if err != nil {
		return fmt.Errorf("rediq: %w", err)
	}
	var deadline time.Time
	wait := 500 * time.Microsecond
	for {
		waiting, within, standing, err := b.PauseUnacked(ctx, q, id)
		if deadline.IsZero() {
			deadline = time.Now().Add(max(pauseAckWait, within+pauseAckMargin))
		}
		switch {
		case err != nil:
			return fmt.Errorf("rediq: %w", err)
		case !standing:
			return fmt.Errorf("rediq: pause of queue %q: resumed before every worker acknowledged it", queue)
		case len(waiting) == 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("rediq: queue %q is paused, but worker sessions %s did not acknowledge it in time (workers of a version without pauses?)",
				queue, strings.Join(waiting, ", "))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("rediq: queue %q is paused; waiting for its workers to acknowledge: %w", queue, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// ResumeQueue ends a pause of queue: idle workers start its next task at
// once. Resuming a queue that is not paused does nothing.
func (a *App) ResumeQueue(ctx context.Context, queue string) error {
	if err := CheckQueueName(queue); err != nil {
		return err
	}
	b := a.core.Broker()
	if _, err := b.Resume(ctx, b.Queue(queue)); err != nil {
		return fmt.Errorf("rediq: %w", err)
	}
	return nil
}

// PausedQueues answers which of the named queues (all the namespace's when
// none is named) are paused.
func (a *App) PausedQueues(ctx context.Context, queues ...string) (map[string]bool, error) {
	ids, err := a.perQueue(ctx, queues, a.core.Broker().PausedQueues)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for q, id := range ids {
		out[q] = id != ""
	}
	return out, nil
}

// perQueue answers what read says of each named queue (all the namespace's
// when none is named).
func (a *App) perQueue(ctx context.Context, queues []string, read func(context.Context, []*broker.Queue) ([]string, error)) (map[string]string, error) {
	if len(queues) == 0 {
		var err error
		if queues, err = a.Queues(ctx); err != nil {
			return nil, err
		}
	}
	b := a.core.Broker()
	qs := make([]*broker.Queue, len(queues))
	for i, n := range queues {
		if err := CheckQueueName(n); err != nil {
			return nil, err
		}
		qs[i] = b.Queue(n)
	}
	vals, err := read(ctx, qs)
	if err != nil {
		return nil, fmt.Errorf("rediq: %w", err)
	}
	out := make(map[string]string, len(queues))
	for i, n := range queues {
		out[n] = vals[i]
	}
	return out, nil
}

// SetQueueWindow says when queue's tasks may start, on every worker: spec as
// for RunWindow ("" clears it, so that they start any time). Outside the
// window workers fetch none of the queue's tasks and give back what they
// prefetched (no attempt is counted); running tasks finish. Each worker
// re-evaluates the window at its next opening or closing (no polling) and
// learns a new one at once. The window is kept in Redis. A bad spec is an
// error here.
func (a *App) SetQueueWindow(ctx context.Context, queue, spec string) error {
	if err := CheckQueueName(queue); err != nil {
		return err
	}
	if spec != "" {
		w, err := window.Parse(spec)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidOption, err)
		}
		spec = w.String()
	}
	b := a.core.Broker()
	if err := b.SetWindow(ctx, b.Queue(queue), spec); err != nil {
		return fmt.Errorf("rediq: %w", err)
	}
	return nil
}

// QueueWindows answers the run window of each named queue (all the
// namespace's when none is named); "" for none.
func (a *App) QueueWindows(ctx context.Context, queues ...string) (map[string]string, error) {
	return a.perQueue(ctx, queues, a.core.Broker().Windows)
}
