package rediq

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
)

// Limit is a task's flow control: at most Rate starts per Per, and at most
// Concurrency tasks running at once, counted across every worker of the
// namespace — per limit key when tasks are enqueued with LimitKey, else for
// the task as a whole. A zero field is no limit of that kind.
type Limit struct {
	Rate        int
	Per         time.Duration
	Concurrency int
}

func (l Limit) check() error {
	switch {
	case l.Rate < 0 || l.Concurrency < 0 || l.Per < 0:
		return fmt.Errorf("%w: limit %+v is negative", ErrInvalidOption, l)
	case l.Rate > 0 && l.Per < time.Millisecond:
		return fmt.Errorf("%w: a rate of %d needs a period of 1ms or more (Per %s)", ErrInvalidOption, l.Rate, l.Per)
	case l.Rate > 1_000_000:
		return fmt.Errorf("%w: a rate of %d per period is more than 1,000,000", ErrInvalidOption, l.Rate)
	case l.Per > 366*24*time.Hour:
		return fmt.Errorf("%w: a period of %s is longer than 366 days", ErrInvalidOption, l.Per)
	}
	return nil
}

func (l Limit) broker() broker.Limit {
	if l.Rate == 0 {
		l.Per = 0
	}
	return broker.Limit{Rate: l.Rate, Per: l.Per, Concurrency: l.Concurrency}
}

// String is the limit as the CLI shows it: "100/s, 20 at once", "5/250ms", or "none".
func (l Limit) String() string {
	s := ""
	if l.Rate > 0 {
		per := l.Per.String()
		switch l.Per {
		case time.Second:
			per = "s"
		case time.Minute:
			per = "m"
		case time.Hour:
			per = "h"
		}
		s = fmt.Sprintf("%d/%s", l.Rate, per)
	}
	if l.Concurrency > 0 {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%d at once", l.Concurrency)
	}
	if s == "" {
		return "none"
	}
	return s
}

// RateLimit allows at most n starts of the task per period per, across every
// worker of the namespace (per key with LimitKey). It is decided where tasks
// are fetched: a task over the limit stays pending — no attempt counted, no
// retry used — and becomes fetchable exactly when the limit allows, by a
// timer, not by polling. In any window of length per at most n of them start; the
// limiter keeps the window 2.5% longer than per, so that the few ms between
// the fetch and the handler's start cannot let an extra start in, and so runs
// at ≥ 97.5% of n per per while tasks wait. No burst beyond n is allowed.
// (The delay is measured in ms on a warm worker; a worker process just
// started, under load, can take tens of ms for its first tasks, and starts
// then may bunch past the margin.) Set in code, it is the default:
// App.SetLimit changes it at run time.
func RateLimit(n int, per time.Duration) TaskOption {
	return taskOnly(func(o *taskOptions) {
		l := Limit{Rate: n, Per: per, Concurrency: o.limit.Concurrency}
		if err := l.check(); err != nil || n < 1 {
			o.fail("RateLimit(%d, %s): a rate of 1 or more per period of 1ms or more", n, per)
		}
		o.limit = l.broker()
		o.limit.Code = true
	})
}

// Concurrency allows at most n of the task to run at once, across every
// worker of the namespace (per key with LimitKey). A running task holds its
// slot until it ends, however it ends; the slots of a worker that was killed
// are freed when its lease is reclaimed (within LeaseTTL). Set in code, it is
// the default: App.SetLimit changes it at run time.
func Concurrency(n int) TaskOption {
	return taskOnly(func(o *taskOptions) {
		if n < 1 {
			o.fail("Concurrency(%d): 1 or more", n)
		}
		o.limit.Concurrency = n
		o.limit.Code = true
	})
}

// LimitKey makes the task's limits apply per key: each key (a customer, a
// tenant, an API token) gets its own rate and concurrency, and its own lane in
// the queue, so that a key held back by its limit never holds back another's
// tasks. Tasks of different keys at one priority take turns. The key is kept
// in the task's message (at most 200 bytes).
func LimitKey(key string) EnqueueOption {
	return enqueueOnly(func(o *enqueueOptions) {
		if key == "" || len(key) > 200 {
			o.fail("LimitKey %.20q: 1 to 200 bytes", key)
		}
		o.limitKey = key
	})
}

// SetLimit sets taskName's limit on every worker, at once and for the tasks
// already waiting: it stands over the limit declared in code until it is set
// again. A zero Limit removes every limit from the task (the code's default
// too, until SetLimit is called again). The task's queue is found from this
// App's registration, or from what workers that run it declared at start.
func (a *App) SetLimit(ctx context.Context, taskName string, l Limit) error {
	if err := l.check(); err != nil {
		return err
	}
	if codec.Flow(taskName, "") == "" {
		return fmt.Errorf("%w: task %q has '|' in its name, so it has no limits", ErrInvalidOption, taskName)
	}
	queue, err := a.taskQueue(ctx, taskName)
	if err != nil {
		return err
	}
	b := a.core.Broker()
	// A zero limit is stored too (as set at run time), so that a worker's
	// code default does not come back over it at its next start.
	if _, err := b.SetLimit(ctx, b.Queue(queue), taskName, l.broker()); err != nil {
		return fmt.Errorf("rediq: %w", err)
	}
	return nil
}

// taskQueue answers the queue of taskName: registered here, or declared by a worker.
func (a *App) taskQueue(ctx context.Context, taskName string) (string, error) {
	if def, ok := a.core.Task(taskName); ok {
		return def.Queue, nil
	}
	q, err := a.core.Broker().TaskQueue(ctx, taskName)
	if err != nil {
		return "", fmt.Errorf("rediq: %w", err)
	}
	if q == "" {
		return "", fmt.Errorf("rediq: task %q is unknown in namespace %q: no worker that runs it has started (and this process did not register it)", taskName, a.Namespace())
	}
	return q, nil
}

// LimitInfo is one task's limit as workers apply it.
type LimitInfo struct {
	Task  string
	Queue string
	Limit
	// Code: the limit declared in code (RateLimit, Concurrency); false: set
	// at run time (SetLimit).
	Code bool
	// Running is how many of its tasks hold a concurrency slot now, per
	// flow: "" for the task as a whole, else the limit key.
	Running map[string]int
}

// Limits lists the limits of every queue of the namespace, by queue and task.
func (a *App) Limits(ctx context.Context) ([]LimitInfo, error) {
	names, err := a.Queues(ctx)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	b := a.core.Broker()
	qs := make([]*broker.Queue, len(names))
	for i, n := range names {
		qs[i] = b.Queue(n)
	}
	all, err := b.Limits(ctx, qs)
	if err != nil {
		return nil, fmt.Errorf("rediq: %w", err)
	}
	var out []LimitInfo
	for i, m := range all {
		if len(m) == 0 {
			continue
		}
		run, err := b.FlowsRunning(ctx, qs[i])
		if err != nil {
			return nil, fmt.Errorf("rediq: %w", err)
		}
		tasks := make([]string, 0, len(m))
		for t := range m {
			tasks = append(tasks, t)
		}
		sort.Strings(tasks)
		for _, t := range tasks {
			l := m[t]
			li := LimitInfo{Task: t, Queue: names[i], Limit: Limit{Rate: l.Rate, Per: l.Per, Concurrency: l.Concurrency}, Code: l.Code,
				Running: map[string]int{}}
			for flow, n := range run {
				if flow == t {
					li.Running[""] = n
				} else if key, ok := strings.CutPrefix(flow, t+"|"); ok {
					li.Running[key] = n
				}
			}
			out = append(out, li)
		}
	}
	return out, nil
}
