package rediq

import (
	"fmt"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/window"
)

// TaskOption configures Register.
type TaskOption interface{ applyTask(*taskOptions) }

// EnqueueOption configures one Enqueue or EnqueueMany call.
type EnqueueOption interface{ applyEnqueue(*enqueueOptions) }

// Option works both at registration (the task's default) and per call (an override).
type Option interface {
	TaskOption
	EnqueueOption
}

type taskOptions struct {
	queue       string
	priority    int
	retries     int // per call: -1 keeps the task's default
	timeout     time.Duration
	backoff     func(int) time.Duration
	retention   time.Duration
	unique      time.Duration
	expireIn    time.Duration
	memo        time.Duration
	resultTable string
	window      *window.Spec // RunWindow
	limit       broker.Limit // RateLimit, Concurrency
	err         error
}

type enqueueOptions struct {
	taskOptions
	delay     time.Duration
	at        time.Time
	id        string
	uniqueKey string
	expireAt  time.Time
	memoRun   bool // Run of a Memoize task: the memo lock and cache apply
	limitKey  string
	batch     *Batch
}

type option func(*taskOptions)

func (f option) applyTask(o *taskOptions) { f(o) }

func (f option) applyEnqueue(o *enqueueOptions) { f(&o.taskOptions) }

type enqueueOnly func(*enqueueOptions)

func (f enqueueOnly) applyEnqueue(o *enqueueOptions) { f(o) }

type taskOnly func(*taskOptions)

func (f taskOnly) applyTask(o *taskOptions) { f(o) }

func (o *taskOptions) fail(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf(format, args...)
	}
}

// Queue sets the queue (default "default"). A name is at most 200 bytes without
// '{', '}', ':', spaces or line breaks.
func Queue(name string) Option {
	return option(func(o *taskOptions) {
		if err := broker.ValidateQueueName(name); err != nil {
			o.fail("%v", err)
		}
		o.queue = name
	})
}

// Priority sets the priority, from MinPriority to MaxPriority; lower runs first,
// and tasks of equal priority run in enqueue order. Default 0.
func Priority(p int) Option {
	return option(func(o *taskOptions) {
		if p < MinPriority || p > MaxPriority {
			o.fail("priority %d is outside [%d, %d]", p, MinPriority, MaxPriority)
		}
		o.priority = p
	})
}

// Retries sets how many times a failed task is retried (0: never). Default 3.
func Retries(n int) Option {
	return option(func(o *taskOptions) {
		if n < 0 || n > codec.MaxRetries {
			o.fail("retries %d is outside [0, %d]", n, codec.MaxRetries)
		}
		o.retries = n
	})
}

// Timeout bounds each attempt: the handler's context is cancelled when it
// passes and the attempt counts as failed. Default DefaultTimeout.
func Timeout(d time.Duration) Option {
	return option(func(o *taskOptions) {
		if d < time.Millisecond || d > codec.MaxTimeoutMs*time.Millisecond {
			o.fail("timeout %s is outside [1ms, 366 days]", d)
		}
		o.timeout = d
	})
}

// RunWindow says when the task may start: spec is optional weekday ranges, a
// time-of-day range (HH:MM or HH:MM:SS; it may wrap past midnight), an
// optional IANA zone (UTC by default), and "not" in front for the inverse —
// "Mon-Fri 09:00-17:30 Europe/Berlin", "not 01:00-06:00 Asia/Shanghai". A
// task fetched outside its window waits, scheduled, until the window opens:
// no attempt is counted and nothing polls. Running tasks are not stopped when
// the window closes. A bad spec panics at Register, like every bad option.
func RunWindow(spec string) TaskOption {
	return taskOnly(func(o *taskOptions) {
		w, err := window.Parse(spec)
		if err != nil {
			o.fail("%v", err)
		}
		o.window = w
	})
}

// Backoff sets the delay before retry number retried+1 (retried counts the
// failed attempts so far, from 0).
func Backoff(f func(retried int) time.Duration) TaskOption {
	return taskOnly(func(o *taskOptions) {
		if f == nil {
			o.fail("nil backoff")
		}
		o.backoff = f
	})
}

// Delay makes the task due d from now (by the Redis server's clock) instead of
// at once.
func Delay(d time.Duration) EnqueueOption {
	return enqueueOnly(func(o *enqueueOptions) { o.delay = d })
}

// WithID gives the task a caller-chosen id instead of a generated one: 1 to 256
// bytes, unique in the namespace. Enqueueing an id that exists in any queue of
// the namespace writes nothing and returns an error matching ErrDuplicate (a
// *DuplicateError), which makes Enqueue idempotent: a producer that got an
// error matching ErrOutcomeUnknown enqueues again with the same id. An id is
// free again once its task has left Redis (succeeded, or trimmed from the
// dead set).
//
// Uniqueness within the task's queue is atomic. Across queues it is checked
// just before the enqueue, so two concurrent enqueues of one id into two
// different queues can both succeed; give one logical task one queue.
func WithID(id string) EnqueueOption {
	return enqueueOnly(func(o *enqueueOptions) {
		if id == "" || len(id) > 256 {
			o.fail("task id %.20q… must be 1 to 256 bytes", id)
		}
		o.id = id
	})
}

// Retention keeps a task's record — and its result, for a success — for d
// after it finishes, so that GetTask, ListTasks and Wait can see it. The
// default, 0, keeps nothing of a task that succeeded, was cancelled or expired
// (dead tasks follow the dead set's retention, whatever this says). Redis
// drops the record when d has passed: a TTL, not a sweep. At most 366 days.
func Retention(d time.Duration) Option {
	return option(func(o *taskOptions) {
		if d < 0 || d > codec.MaxRetentionMs*time.Millisecond {
			o.fail("retention %s is outside [0, 366 days]", d)
		}
		o.retention = d
	})
}

// Unique makes an Enqueue write nothing, returning an error matching
// ErrDuplicate (a *DuplicateError whose ExistingID is the task holding the
// lock), while another task of the same name with the same arguments (or the
// same UniqueKey) holds the lock: from its enqueue until the first of
//
//   - ttl passing;
//   - the task succeeding, being cancelled, expiring or being deleted: it will
//     not run again, so a new one may be enqueued;
//   - a dead task being trimmed from the dead set.
//
// A task that dies keeps the lock until its ttl: it may still be requeued
// (RequeueTask), and a second copy would then run beside it. DeleteTask
// releases it at once. The check and the write are one script: of any number
// of concurrent Enqueues, exactly one is written.
func Unique(ttl time.Duration) Option {
	return option(func(o *taskOptions) {
		if ttl < time.Millisecond {
			o.fail("unique ttl %s is shorter than 1ms", ttl)
		}
		o.unique = ttl
	})
}

// UniqueKey makes Unique compare key instead of the task's arguments (the
// task's name still counts: keys of different tasks never collide). Without
// Unique on the task or the call it does nothing.
func UniqueKey(key string) EnqueueOption {
	return enqueueOnly(func(o *enqueueOptions) { o.uniqueKey = key })
}

// ExpireIn makes a task that has not started d after its enqueue never run: a
// worker that fetches it later, or finds the deadline passed while the task
// waited in its prefetch buffer, finishes it as StateExpired (counted per
// queue) instead. The deadline is kept in Redis and compared with Redis's
// clock; it applies to retries too.
func ExpireIn(d time.Duration) Option {
	return option(func(o *taskOptions) {
		if d < time.Millisecond {
			o.fail("expiry %s is shorter than 1ms", d)
		}
		o.expireIn = d
	})
}

// ExpireAt is ExpireIn until t (by this process's clock).
func ExpireAt(t time.Time) EnqueueOption {
	return enqueueOnly(func(o *enqueueOptions) { o.expireAt = t })
}

// Memoize caches a task's result for ttl after it succeeds: Run (and so
// Wait on the task Run enqueued) with the same arguments within ttl returns
// the cached result without running the handler, and concurrent Runs with the
// same arguments — in any process — share one execution: the first enqueues,
// the others wait for its result. Enqueue is not affected: it always enqueues
// and runs, and neither reads nor fills the cache.
func Memoize(ttl time.Duration) TaskOption {
	return taskOnly(func(o *taskOptions) {
		if ttl < time.Millisecond || ttl > codec.MaxRetentionMs*time.Millisecond {
			o.fail("memoize ttl %s is outside [1ms, 366 days]", ttl)
		}
		o.memo = ttl
	})
}

// ProcessAt makes the task due at t.
func ProcessAt(t time.Time) EnqueueOption {
	return enqueueOnly(func(o *enqueueOptions) { o.at = t })
}
