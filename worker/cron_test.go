package worker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// cronChild declares the schedule "tick" and fires it; it runs no task.
func cronChild(app *rediq.App) int {
	task := rediq.Register(app, "tick", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("cronjobs"))
	if err := app.Schedule("tick", "@every 100ms", task.With(0)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	w, err := worker.New(app, worker.Config{Queues: []string{"cronidle"}, SkipDefaultQueue: true, Concurrency: 1,
		LeaseTTL: 2 * time.Second, Name: "cron-" + strconv.Itoa(os.Getpid())})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	err = w.Run(context.Background()) // returns only if it fails: the parent kills us
	fmt.Fprintln(os.Stderr, "cron worker:", err)
	return 4
}

// A schedule fires exactly once per tick: five processes declare and fire
// the same "@every 100ms" schedule while one of them at a time is SIGKILLed
// at random and started again. Every tick between the first and the last
// fired runs exactly once (0 duplicates, 0 missed: at least four schedulers
// live at any moment). REDIQ_CRON_TICKS sets how many ticks to watch (200 by
// default; the note's figures are from 600).
func TestScheduleFiresExactlyOncePerTick(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ticks := 200
	if v, err := strconv.Atoi(os.Getenv("REDIQ_CRON_TICKS")); err == nil && v > 0 {
		ticks = v
	}
	type run struct {
		tick time.Time
		at   time.Time
	}
	var mu sync.Mutex
	runs := map[string][]run{}
	rediq.Register(e.app, "tick", func(ctx context.Context, _ int) (int, error) {
		now := time.Now()
		id, at, ok := rediq.ScheduledTick(ctx)
		info, _ := rediq.CurrentTask(ctx)
		if !ok || id != "tick" {
			return 0, fmt.Errorf("ScheduledTick = %q %v %v", id, at, ok)
		}
		mu.Lock()
		runs[string(info.ID)] = append(runs[string(info.ID)], run{at, now})
		mu.Unlock()
		return 0, nil
	}, rediq.Queue("cronjobs"))
	e.start(e.app, worker.Config{Queues: []string{"cronjobs"}, SkipDefaultQueue: true, Concurrency: 10, DisableSchedules: true})

	children := make([]*child, 5)
	for i := range children {
		children[i] = startChild(t, e, "cron")
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(runs)
	}
	testredis.WaitFor(t, 30*time.Second, "the first ticks", func() bool { return count() > 5 })
	kills := 0
	deadline := time.Now().Add(time.Duration(ticks)*100*time.Millisecond + 30*time.Second)
	for count() < ticks+5 && time.Now().Before(deadline) {
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		i := rand.IntN(len(children))
		if err := children[i].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-children[i].exited
		children[i] = startChild(t, e, "cron")
		kills++
	}
	for _, c := range children {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
	}
	testredis.WaitFor(t, 30*time.Second, "the last fired tasks to run", func() bool {
		st, err := e.app.QueueStats(context.Background(), "cronjobs")
		return err == nil && st[0].Pending == 0 && st[0].Active == 0
	})

	mu.Lock()
	defer mu.Unlock()
	var at []int64
	var lat []time.Duration
	dups := 0
	for id, rs := range runs {
		ms, _ := strconv.ParseInt(id[strings.LastIndexByte(id, ':')+1:], 10, 64)
		at = append(at, ms)
		if len(rs) > 1 {
			dups++
			t.Errorf("tick %s ran %d times", id, len(rs))
		}
		lat = append(lat, rs[0].at.Sub(rs[0].tick))
	}
	slices.Sort(at)
	missed := 0
	for i := 1; i < len(at); i++ {
		if gap := at[i] - at[i-1]; gap != 100 {
			missed += int(gap/100) - 1
			t.Errorf("ticks %d to %d: %d missed", at[i-1], at[i], gap/100-1)
		}
	}
	slices.Sort(lat)
	t.Logf("%d ticks over %v, %d SIGKILLs: %d duplicates, %d missed; tick to handler start p50 %v, p99 %v, max %v",
		len(at), time.Duration(at[len(at)-1]-at[0])*time.Millisecond, kills, dups, missed,
		lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	if len(at) < ticks {
		t.Fatalf("%d ticks ran; want at least %d", len(at), ticks)
	}
}

// After an outage (no worker fired the schedule for days) CatchUpLatest fires
// the latest missed tick once and CatchUpNone none; OverlapSkip fires nothing
// while the previous tick's task runs; a paused schedule fires nothing, but
// TriggerSchedule fires it at once; Schedules reports all of it.
func TestSchedulePolicies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var mu sync.Mutex
	ran := map[string]int{}
	release := make(chan struct{})
	task := rediq.Register(e.app, "job", func(ctx context.Context, n int) (int, error) {
		id, _, _ := rediq.ScheduledTick(ctx)
		mu.Lock()
		ran[id]++
		mu.Unlock()
		if n == 1 {
			<-release
		}
		return 0, nil
	}, rediq.Queue("sched"))
	runs := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return ran[id]
	}
	for _, s := range []struct {
		id, spec string
		n        int
		opts     []rediq.ScheduleOption
	}{
		{"latest", "0 3 * * *", 0, nil},
		{"none", "0 3 * * *", 0, []rediq.ScheduleOption{rediq.CatchUp(rediq.CatchUpNone)}},
		{"skip", "@every 50ms", 1, []rediq.ScheduleOption{rediq.WithOverlap(rediq.OverlapSkip)}},
		{"paused", "@every 50ms", 0, nil},
	} {
		if err := e.app.Schedule(s.id, s.spec, task.With(s.n), s.opts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.app.Schedule("latest", "@daily", task.With(0)); err == nil {
		t.Fatal("a schedule declared twice was accepted")
	}
	if err := e.app.Schedule("bad", "61 * * * *", task.With(0)); err == nil || !strings.Contains(err.Error(), "61") {
		t.Fatalf("bad spec: %v", err)
	}
	// Both daily schedules last fired three days ago.
	now := time.Now().UTC()
	prev := time.Date(now.Year(), now.Month(), now.Day(), 3, 0, 0, 0, time.UTC)
	if prev.After(now) {
		prev = prev.AddDate(0, 0, -1)
	}
	for _, id := range []string{"latest", "none"} {
		e.rdb.HSet(ctx, e.ns+":{sched}:cron:"+id, "last", prev.AddDate(0, 0, -3).UnixMilli())
	}
	if err := e.app.PauseSchedule(ctx, "paused"); err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{Queues: []string{"sched"}, SkipDefaultQueue: true, Concurrency: 4})

	testredis.WaitFor(t, 30*time.Second, "the latest missed tick", func() bool { return runs("latest") == 1 })
	testredis.WaitFor(t, 30*time.Second, "the skip schedule's first run", func() bool { return runs("skip") == 1 })
	// The skip schedule's task holds: its ticks go by unfired.
	testredis.WaitFor(t, 30*time.Second, "a skipped tick", func() bool {
		return e.rdb.HExists(ctx, e.ns+":{sched}:cron:skip", "skipped").Val()
	})
	if n := runs("skip"); n != 1 {
		t.Fatalf("the skip schedule ran %d times while its first run held", n)
	}
	id, err := e.app.TriggerSchedule(ctx, "paused")
	if err != nil || !strings.HasPrefix(string(id), "cron:paused:") {
		t.Fatalf("trigger = %q, %v", id, err)
	}
	testredis.WaitFor(t, 30*time.Second, "the triggered run", func() bool { return runs("paused") == 1 })
	infos, err := e.app.Schedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]rediq.ScheduleInfo{}
	for _, in := range infos {
		byID[in.ID] = in
	}
	if in := byID["paused"]; !in.Paused || in.LastTask != id || !in.InCode || in.NextFire.IsZero() {
		t.Fatalf("paused schedule %+v", in)
	}
	if in := byID["latest"]; !in.LastTick.Equal(prev) || in.Spec != "0 3 * * *" || in.Zone != "UTC" {
		t.Fatalf("latest schedule %+v; want its last tick %v", in, prev)
	}
	if in := byID["skip"]; in.Overlap != rediq.OverlapSkip || in.LastState != rediq.StateActive {
		t.Fatalf("skip schedule %+v", in)
	}
	close(release)
	testredis.WaitFor(t, 30*time.Second, "the skip schedule to fire again", func() bool { return runs("skip") >= 2 })
	if err := e.app.ResumeSchedule(ctx, "paused"); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 30*time.Second, "the resumed schedule to fire", func() bool { return runs("paused") >= 2 })
	if n := runs("none"); n != 0 {
		t.Fatalf("CatchUpNone fired %d missed ticks", n)
	}
	if n := runs("latest"); n != 1 {
		t.Fatalf("CatchUpLatest fired %d times; want the latest missed tick once", n)
	}
}
