package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var limitSetScript = load("limit_set", "lib")

// Limit is a task type's limit on one queue (fetch.lua decides it): at most
// Rate starts per Per, and at most Concurrency running at once, per flow (the
// type, or the type and a limit key). Zero fields are no limit.
type Limit struct {
	Rate        int
	Per         time.Duration
	Concurrency int
	// Code: declared in code (a worker's default), not set at run time: a
	// limit set at run time stands over it.
	Code bool
}

// IsZero reports whether l limits nothing.
func (l Limit) IsZero() bool { return (l.Rate <= 0 || l.Per <= 0) && l.Concurrency <= 0 }

func (l Limit) value() string {
	src := "o"
	if l.Code {
		src = "c"
	}
	return fmt.Sprintf("%d:%d:%d:%s", max(l.Rate, 0), max(l.Per.Milliseconds(), 0), max(l.Concurrency, 0), src)
}

func parseLimit(v string) (Limit, bool) {
	f := strings.Split(v, ":")
	if len(f) != 4 {
		return Limit{}, false
	}
	r, err1 := strconv.Atoi(f[0])
	per, err2 := strconv.ParseInt(f[1], 10, 64)
	c, err3 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return Limit{}, false
	}
	return Limit{Rate: r, Per: time.Duration(per) * time.Millisecond, Concurrency: c, Code: f[3] == "c"}, true
}

// limitsKey is q's hash of limits: type -> "RATE:PER_MS:CONCURRENCY:SOURCE".
func (q *Queue) limitsKey() string { return q.Prefix + "limits" }

// SetLimit sets the limit of task type typ on q and reports whether it
// changed. A limit declared in code (l.Code) does not replace one set at run
// time, and a zero one declared in code clears only a code default. A zero
// limit set at run time is stored: it stands over the code's default. The
// type's blocked lanes are looked at anew, and idle workers woken.
func (b *Broker) SetLimit(ctx context.Context, q *Queue, typ string, l Limit) (bool, error) {
	v, src := l.value(), "o"
	if l.Code {
		src = "c"
		if l.IsZero() {
			v = ""
		}
	}
	n, err := b.run(ctx, limitSetScript, []string{q.limitsKey()}, q.Prefix, typ, v, q.Channel, src).Int()
	if err != nil {
		return false, fmt.Errorf("set the limit of %q on %q: %w", typ, q.Name, err)
	}
	return n == 1, nil
}

// Limits answers each queue's limits by task type. A value that cannot be
// parsed (written by hand) is left out.
func (b *Broker) Limits(ctx context.Context, qs []*Queue) ([]map[string]Limit, error) {
	p := b.rdb.Pipeline()
	cmds := make([]interface{ Val() map[string]string }, len(qs))
	for i, q := range qs {
		cmds[i] = p.HGetAll(ctx, q.limitsKey())
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read limits: %w", err)
	}
	out := make([]map[string]Limit, len(qs))
	for i, c := range cmds {
		out[i] = map[string]Limit{}
		for typ, v := range c.Val() {
			if l, ok := parseLimit(v); ok {
				out[i][typ] = l
			}
		}
	}
	return out, nil
}

// FlowsRunning answers, per flow with a concurrency limit, how many of its
// tasks hold a slot now.
func (b *Broker) FlowsRunning(ctx context.Context, q *Queue) (map[string]int, error) {
	m, err := b.rdb.HGetAll(ctx, q.Prefix+"lim:run").Result()
	if err != nil {
		return nil, fmt.Errorf("read running of %q: %w", q.Name, err)
	}
	out := make(map[string]int, len(m))
	for f, v := range m {
		n, _ := strconv.Atoi(v)
		out[f] = n
	}
	return out, nil
}

func (b *Broker) tasksKey() string { return b.ns + ":tasks" }

// DeclareTasks records which queue each task type runs on (workers call it
// at start), so that a process that has not registered a task (the CLI) can
// find its queue.
func (b *Broker) DeclareTasks(ctx context.Context, queueOf map[string]string) error {
	if len(queueOf) == 0 {
		return nil
	}
	if err := b.rdb.HSet(ctx, b.tasksKey(), queueOf).Err(); err != nil {
		return fmt.Errorf("declare tasks: %w", err)
	}
	return nil
}

// TaskQueue answers the queue a worker declared for task type typ ("" none).
func (b *Broker) TaskQueue(ctx context.Context, typ string) (string, error) {
	q, err := b.rdb.HGet(ctx, b.tasksKey(), typ).Result()
	if err != nil && err != redis.Nil {
		return "", fmt.Errorf("find the queue of %q: %w", typ, err)
	}
	return q, nil
}
