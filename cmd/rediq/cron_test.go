package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// rediq cron lists the schedules workers declared, pauses and resumes them,
// and triggers one without its code (from the declared task).
func TestCron(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	task := rediq.Register(app, "report", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("reports"))
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Schedule("nightly", "30 2 * * *", task.With(7), rediq.InLocation(berlin)); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(app, worker.Config{Queues: []string{"other"}, SkipDefaultQueue: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	list := func() []cronRow {
		t.Helper()
		out, _, err := rediqCmd(t, append([]string{"cron", "list", "-o", "json"}, redisArgs(ns)...)...)
		var rows []cronRow
		if err != nil || json.Unmarshal([]byte(out), &rows) != nil {
			t.Fatalf("cron list: %v\n%s", err, out)
		}
		return rows
	}
	testredis.WaitFor(t, 30*time.Second, "the worker to declare the schedule", func() bool { return len(list()) == 1 })
	r := list()[0]
	if r.ID != "nightly" || r.Spec != "30 2 * * *" || r.Zone != "Europe/Berlin" || r.Queue != "reports" || r.Task != "report" ||
		r.Paused || r.NextFire == nil || r.NextFire.In(berlin).Hour() != 2 {
		t.Fatalf("listed %+v", r)
	}
	out, _, err := rediqCmd(t, append([]string{"cron", "list"}, redisArgs(ns)...)...)
	if err != nil || !strings.Contains(out, "nightly") || !strings.Contains(out, "Europe/Berlin") {
		t.Fatalf("cron list: %v\n%s", err, out)
	}
	if out, _, err := rediqCmd(t, append([]string{"cron", "pause", "nightly"}, redisArgs(ns)...)...); err != nil || !list()[0].Paused {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	out, _, err = rediqCmd(t, append([]string{"cron", "trigger", "nightly"}, redisArgs(ns)...)...)
	if err != nil || !strings.HasPrefix(out, "cron:nightly:") {
		t.Fatalf("trigger: %v\n%s", err, out)
	}
	rec, err := app.GetTask(context.Background(), rediq.TaskID(strings.TrimSpace(out)))
	if err != nil || rec.State != rediq.StatePending || rec.Queue != "reports" || rec.Name != "report" {
		t.Fatalf("the triggered task: %+v, %v", rec, err)
	}
	if out, _, err := rediqCmd(t, append([]string{"cron", "resume", "nightly"}, redisArgs(ns)...)...); err != nil || list()[0].Paused {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if _, _, err := rediqCmd(t, append([]string{"cron", "trigger", "nope"}, redisArgs(ns)...)...); err == nil {
		t.Fatal("trigger of an undeclared schedule succeeded")
	}
}
