package rediq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
	"github.com/rediq/rediq/internal/cronspec"
)

// Overlap says what a schedule does at a tick while the task of its previous
// tick has not finished.
type Overlap int

const (
	// OverlapAllow fires every tick (the default).
	OverlapAllow Overlap = iota
	// OverlapSkip fires nothing while the previous tick's task waits or runs.
	OverlapSkip
)

// CatchUpPolicy says what a schedule fires for the ticks it missed while no
// process fired it (every worker was down).
type CatchUpPolicy int

const (
	// CatchUpLatest fires the latest missed tick, once (the default).
	CatchUpLatest CatchUpPolicy = iota
	// CatchUpNone fires none of them: the schedule goes on with its next tick.
	CatchUpNone
)

// ScheduleOption configures a schedule (App.Schedule).
type ScheduleOption func(*scheduleConfig)

type scheduleConfig struct {
	loc     *time.Location
	overlap Overlap
	catchUp CatchUpPolicy
	jitter  time.Duration
}

// InLocation evaluates the schedule's spec in loc (UTC by default): "0 9 * *
// *" in Europe/Berlin fires at 09:00 Berlin time, summer and winter. On a day
// whose clock skips the tick (spring forward) it fires once when the clock
// jumps past it; on a day that repeats it (fall back), once, at its first
// occurrence. Specs that fire every hour of the day run on elapsed time.
func InLocation(loc *time.Location) ScheduleOption {
	return func(c *scheduleConfig) { c.loc = loc }
}

// WithOverlap sets what a tick does while the previous tick's task has not
// finished: OverlapAllow (the default) or OverlapSkip.
func WithOverlap(o Overlap) ScheduleOption {
	return func(c *scheduleConfig) { c.overlap = o }
}

// CatchUp sets what the schedule fires after an outage: CatchUpLatest (the
// default) or CatchUpNone.
func CatchUp(p CatchUpPolicy) ScheduleOption {
	return func(c *scheduleConfig) { c.catchUp = p }
}

// Jitter delays each tick's firing by up to d (and by less than the time to
// the next tick, so that ticks still fire in order), the same delay in every
// process (derived from the schedule and the tick), so that many schedules
// due at one moment do not all fire at once.
func Jitter(d time.Duration) ScheduleOption {
	return func(c *scheduleConfig) { c.jitter = d }
}

// ScheduleInfo is a schedule as App.Schedules reports it.
type ScheduleInfo struct {
	ID       string
	Spec     string
	Zone     string // the IANA zone the spec is read in
	Queue    string
	Task     string
	Overlap  Overlap
	CatchUp  CatchUpPolicy
	Jitter   time.Duration
	Paused   bool
	LastFire time.Time // when the last task was fired (zero: never)
	LastTick time.Time // the last tick claimed (fired, skipped or paused)
	NextFire time.Time // the next tick (zero if there is none)
	LastTask TaskID    // the last task fired ("" if none)
	// LastState is the last task's state, "" if it is gone (it succeeded
	// without a Retention, or was never fired).
	LastState TaskState
	// InCode says the schedule is declared in this process (not only by the
	// workers that wrote it to Redis).
	InCode bool
}

// declaration is a schedule as workers write it to Redis (NS:schedules), for
// tools that have no code of their own.
type declaration struct {
	Spec    string `json:"spec"`
	Zone    string `json:"zone"`
	Queue   string `json:"queue"`
	Task    string `json:"task"`
	Skip    bool   `json:"skip,omitempty"`
	CatchUp string `json:"catch_up"`
	Jitter  int64  `json:"jitter_ms,omitempty"`
	// The task's message (its args and options), so that a tool without the
	// code can trigger it (TriggerSchedule in any process).
	Body      []byte `json:"body"`
	Slot      int    `json:"slot"`
	Retention int64  `json:"retention_ms,omitempty"`
	ExpireIn  int64  `json:"expire_in_ms,omitempty"`
}

// Schedule declares a schedule: call is enqueued at every tick of spec — the
// 5-field cron form (minute hour day-of-month month day-of-week), the
// 6-field form with seconds first, descriptors (@daily, @hourly…), or
// "@every 90s" (ticks at whole multiples of the interval since the Unix
// epoch). Declare the same schedule in every process that has it in code;
// workers (unless Config.DisableSchedules) fire it, and each tick fires
// exactly once however many workers run: a tick is claimed and its task
// enqueued in one Redis script. The task's id is "cron:ID:TICK" (Unix ms);
// in the handler, ScheduledTick says which schedule and tick it runs for.
//
// A bad id, spec or option is an error here, never at run time.
func (a *App) Schedule(id, spec string, call Call, opts ...ScheduleOption) error {
	if id == "" || len(id) > 200 || strings.ContainsAny(id, " \t\r\n{}") {
		return fmt.Errorf("%w: schedule id %q: 1 to 200 bytes, no spaces or braces", ErrInvalidOption, id)
	}
	if call == nil {
		return fmt.Errorf("%w: schedule %q: no call", ErrInvalidOption, id)
	}
	c := scheduleConfig{loc: time.UTC}
	for _, o := range opts {
		o(&c)
	}
	if c.loc == nil {
		return fmt.Errorf("%w: schedule %q: nil location", ErrInvalidOption, id)
	}
	if c.jitter < 0 || c.overlap < OverlapAllow || c.overlap > OverlapSkip || c.catchUp < CatchUpLatest || c.catchUp > CatchUpNone {
		return fmt.Errorf("%w: schedule %q: bad option", ErrInvalidOption, id)
	}
	s, err := cronspec.Parse(spec, c.loc)
	if err != nil {
		return fmt.Errorf("%w: schedule %q: %v", ErrInvalidOption, id, err)
	}
	// The call is checked now: its options and arguments must make a message.
	m, queue, err := call.messageAs(time.Now(), core.TickTaskID(id, 0))
	if err != nil {
		return fmt.Errorf("schedule %q: %w", id, err)
	}
	if m.Lock != "" {
		return fmt.Errorf("%w: schedule %q: a scheduled call cannot be Unique or Memoize (overlap decides)", ErrInvalidOption, id)
	}
	d := declaration{Spec: s.String(), Zone: c.loc.String(), Queue: queue, Task: call.taskName(),
		Skip: c.overlap == OverlapSkip, CatchUp: map[CatchUpPolicy]string{CatchUpLatest: "latest", CatchUpNone: "none"}[c.catchUp],
		Jitter: c.jitter.Milliseconds(), Body: m.Body, Slot: m.Slot, Retention: m.Retention.Milliseconds(),
		ExpireIn: m.ExpireIn.Milliseconds()}
	js, _ := json.Marshal(d)
	def := &core.ScheduleDef{ID: id, Spec: s, Queue: queue, Task: d.Task, Skip: d.Skip,
		CatchUpLatest: c.catchUp == CatchUpLatest, Jitter: c.jitter, Declared: string(js),
		Message: func(now time.Time, taskID string) (broker.Message, error) {
			m, _, err := call.messageAs(now, taskID)
			return m, err
		}}
	if !a.core.AddSchedule(def) {
		return fmt.Errorf("%w: schedule %q is declared twice", ErrInvalidOption, id)
	}
	return nil
}

// ScheduledTick returns, in a handler, the schedule and tick its task was
// fired for (App.Schedule; for TriggerSchedule, the moment of the trigger);
// ok is false for a task no schedule fired.
func ScheduledTick(ctx context.Context) (id string, at time.Time, ok bool) {
	s := core.StateFrom(ctx)
	if s == nil {
		return "", time.Time{}, false
	}
	id, tick, ok := core.ParseTickTaskID(s.ID)
	if !ok {
		return "", time.Time{}, false
	}
	return id, time.UnixMilli(tick), true
}

// Schedules lists the namespace's schedules: those declared in this process
// and those workers declared in Redis, with their state.
func (a *App) Schedules(ctx context.Context) ([]ScheduleInfo, error) {
	b := a.core.Broker()
	decl, err := b.DeclaredCron(ctx)
	if err != nil {
		return nil, fmt.Errorf("rediq: %w", err)
	}
	byID := map[string]*ScheduleInfo{}
	for id, js := range decl {
		var d declaration
		if json.Unmarshal([]byte(js), &d) != nil {
			continue
		}
		in := &ScheduleInfo{ID: id, Spec: d.Spec, Zone: d.Zone, Queue: d.Queue, Task: d.Task,
			Jitter: time.Duration(d.Jitter) * time.Millisecond}
		if d.Skip {
			in.Overlap = OverlapSkip
		}
		if d.CatchUp == "none" {
			in.CatchUp = CatchUpNone
		}
		byID[id] = in
	}
	for _, s := range a.core.Schedules() {
		in := byID[s.ID]
		if in == nil {
			in = &ScheduleInfo{ID: s.ID}
			byID[s.ID] = in
		}
		*in = ScheduleInfo{ID: s.ID, Spec: s.Spec.String(), Zone: s.Spec.Location().String(), Queue: s.Queue, Task: s.Task,
			Jitter: s.Jitter, InCode: true}
		if s.Skip {
			in.Overlap = OverlapSkip
		}
		if !s.CatchUpLatest {
			in.CatchUp = CatchUpNone
		}
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	qs := make([]*broker.Queue, len(ids))
	for i, id := range ids {
		qs[i] = b.Queue(byID[id].Queue)
	}
	sts, err := b.CronStatuses(ctx, qs, ids)
	if err != nil {
		return nil, fmt.Errorf("rediq: %w", err)
	}
	now := time.Now()
	out := make([]ScheduleInfo, len(ids))
	for i, id := range ids {
		in := byID[id]
		st := sts[i]
		in.Paused = st.Paused
		in.LastTask = TaskID(st.Task)
		if st.FiredAt > 0 {
			in.LastFire = time.UnixMilli(st.FiredAt)
		}
		if st.Last > 0 {
			in.LastTick = time.UnixMilli(st.Last)
		}
		if loc, err := time.LoadLocation(in.Zone); err == nil {
			if s, err := cronspec.Parse(in.Spec, loc); err == nil {
				in.NextFire = s.Next(now)
			}
		}
		if st.Task != "" {
			r, err := a.GetTask(ctx, TaskID(st.Task))
			switch {
			case err == nil:
				in.LastState = r.State
			case !errors.Is(err, ErrTaskNotFound):
				return nil, err
			}
		}
		out[i] = *in
	}
	return out, nil
}

// declared finds schedule id: declared in this process (local), or by a
// worker in Redis.
func (a *App) declared(ctx context.Context, id string) (d declaration, local *core.ScheduleDef, err error) {
	if s, ok := a.core.ScheduleByID(id); ok {
		return declaration{Queue: s.Queue}, s, nil
	}
	decl, err := a.core.Broker().DeclaredCron(ctx)
	if err != nil {
		return d, nil, fmt.Errorf("rediq: %w", err)
	}
	if js, ok := decl[id]; !ok || json.Unmarshal([]byte(js), &d) != nil {
		return d, nil, fmt.Errorf("%w: no schedule %q is declared", ErrInvalidOption, id)
	}
	return d, nil, nil
}

// PauseSchedule pauses schedule id everywhere: its ticks fire nothing (and
// are not caught up) until ResumeSchedule.
func (a *App) PauseSchedule(ctx context.Context, id string) error {
	return a.pauseSchedule(ctx, id, true)
}

// ResumeSchedule ends a PauseSchedule: the schedule fires from its next tick.
func (a *App) ResumeSchedule(ctx context.Context, id string) error {
	return a.pauseSchedule(ctx, id, false)
}

func (a *App) pauseSchedule(ctx context.Context, id string, paused bool) error {
	d, _, err := a.declared(ctx, id)
	if err != nil {
		return err
	}
	b := a.core.Broker()
	if err := b.PauseCron(ctx, b.Queue(d.Queue), id, paused); err != nil {
		return fmt.Errorf("rediq: %w", err)
	}
	return nil
}

// TriggerSchedule fires schedule id now, outside its ticks (even while it is
// paused), and returns the task's id. The schedule may be declared in this
// process or only by workers (its task's message is declared with it).
func (a *App) TriggerSchedule(ctx context.Context, id string) (TaskID, error) {
	d, local, err := a.declared(ctx, id)
	if err != nil {
		return "", err
	}
	b := a.core.Broker()
	now, err := b.ServerTime(ctx)
	if err != nil {
		return "", fmt.Errorf("rediq: %w", err)
	}
	taskID := core.TickTaskID(id, now.UnixMilli())
	var m broker.Message
	if local != nil {
		if m, err = local.Message(time.Now(), taskID); err != nil {
			return "", err
		}
	} else {
		env, err := codec.Decode(d.Body)
		if err != nil {
			return "", fmt.Errorf("rediq: schedule %q: its declared task: %w", id, err)
		}
		env.EnqueuedAt = time.Now().UnixMilli()
		m = broker.Message{ID: taskID, Slot: d.Slot, Flow: env.Flow(), Body: codec.Encode(env),
			Retention: time.Duration(d.Retention) * time.Millisecond, ExpireIn: time.Duration(d.ExpireIn) * time.Millisecond}
	}
	r, err := b.FireCron(ctx, b.Queue(d.Queue), id, 0, false, m)
	if err != nil {
		return "", fmt.Errorf("rediq: %w", err)
	}
	if r != broker.CronFired {
		return "", &DuplicateError{ExistingID: TaskID(taskID), Queue: d.Queue}
	}
	return TaskID(taskID), nil
}
