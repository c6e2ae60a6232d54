package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/rediq/rediq"
)

type cronRow struct {
	ID        string     `json:"id"`
	Spec      string     `json:"spec"`
	Zone      string     `json:"zone"`
	Queue     string     `json:"queue"`
	Task      string     `json:"task"`
	Paused    bool       `json:"paused"`
	Overlap   string     `json:"overlap"`
	CatchUp   string     `json:"catch_up"`
	LastFire  *time.Time `json:"last_fire,omitempty"`
	NextFire  *time.Time `json:"next_fire,omitempty"`
	LastTask  string     `json:"last_task,omitempty"`
	LastState string     `json:"last_state,omitempty"`
}

func runCron(ctx context.Context, args []string, stdout, _ io.Writer) error {
	help := func() {
		fmt.Fprint(stdout, "Usage: rediq cron <action> [ID] [flags]\n\n"+
			"Schedules are declared in code (App.Schedule) and fired by workers, each tick once.\n\nActions:\n"+
			"  list     the schedules workers declared, with their last and next fire\n"+
			"  pause    stop schedule ID from firing (its ticks pass unfired, not caught up)\n"+
			"  resume   let schedule ID fire again from its next tick\n"+
			"  trigger  fire schedule ID now, outside its ticks; prints the task's id\n")
	}
	return runAction("cron", "cron list", []string{"list", "pause", "resume", "trigger"}, args, help,
		func(action string, rest []string) error {
			if action == "list" {
				return cronList(ctx, rest, stdout)
			}
			return cronAct(ctx, action, rest, stdout)
		})
}

func cronList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("cron list", "rediq cron list [flags]\n\nLists the namespace's schedules: spec and zone, queue and task, paused, when it\n"+
		"last fired and fires next, and its last task with that task's state.")
	var rf redisFlags
	rf.register(fs)
	out := registerOutput(fs, "an array of {id, spec, zone, queue, task, paused, overlap, catch_up, last_fire, next_fire, last_task, last_state}")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	return withApp(ctx, "cron list", &rf, func(ctx context.Context, app *rediq.App) error {
		infos, err := app.Schedules(ctx)
		if err != nil {
			return err
		}
		rows := make([]cronRow, len(infos))
		for i, in := range infos {
			r := cronRow{ID: in.ID, Spec: in.Spec, Zone: in.Zone, Queue: in.Queue, Task: in.Task, Paused: in.Paused,
				Overlap: "allow", CatchUp: "latest", LastTask: string(in.LastTask), LastState: string(in.LastState)}
			if in.Overlap == rediq.OverlapSkip {
				r.Overlap = "skip"
			}
			if in.CatchUp == rediq.CatchUpNone {
				r.CatchUp = "none"
			}
			if !in.LastFire.IsZero() {
				r.LastFire = &in.LastFire
			}
			if !in.NextFire.IsZero() {
				r.NextFire = &in.NextFire
			}
			rows[i] = r
		}
		if *out == outputJSON {
			return printJSON(stdout, rows)
		}
		if len(rows) == 0 {
			_, err := fmt.Fprintf(stdout, "No schedules in %s (workers declare them when they start).\n", where(app))
			return err
		}
		at := func(t *time.Time) string {
			if t == nil {
				return "-"
			}
			return t.Local().Format(time.DateTime)
		}
		t := newTable("ID", "SPEC", "ZONE", "QUEUE", "TASK", "PAUSED", "LAST FIRE", "NEXT FIRE", "LAST TASK", "STATE")
		for _, r := range rows {
			state := r.LastState
			if state == "" && r.LastTask != "" {
				state = "gone"
			}
			t.AppendRow(table.Row{r.ID, r.Spec, r.Zone, r.Queue, r.Task, yesNo(r.Paused), at(r.LastFire), at(r.NextFire), r.LastTask, state})
		}
		return printTable(stdout, t)
	})
}

func cronAct(ctx context.Context, action string, args []string, stdout io.Writer) error {
	name := "cron " + action
	fs := newFlagSet(name, "rediq "+name+" ID [flags]\n\n"+map[string]string{
		"pause":   "Pauses the schedule everywhere: its ticks pass unfired (and are not caught up).",
		"resume":  "Resumes the schedule: it fires from its next tick.",
		"trigger": "Fires the schedule now, outside its ticks (even while paused), and prints the task's id.",
	}[action])
	var rf redisFlags
	rf.register(fs)
	out := registerOutput(fs, `{"id": ID, "paused": true|false} or, for trigger, {"id": ID, "task_id": TASK}`)
	pos, err := fs.parseArgs(args, stdout, "ID")
	if err != nil {
		return err
	}
	id := pos[0]
	return withApp(ctx, name, &rf, func(ctx context.Context, app *rediq.App) error {
		switch action {
		case "trigger":
			task, err := app.TriggerSchedule(ctx, id)
			if err != nil {
				return err
			}
			if *out == outputJSON {
				return printJSON(stdout, map[string]string{"id": id, "task_id": string(task)})
			}
			_, err = fmt.Fprintln(stdout, task)
			return err
		case "pause":
			err = app.PauseSchedule(ctx, id)
		default:
			err = app.ResumeSchedule(ctx, id)
		}
		if err != nil {
			return err
		}
		if *out == outputJSON {
			return printJSON(stdout, map[string]any{"id": id, "paused": action == "pause"})
		}
		_, err = fmt.Fprintf(stdout, "schedule %q %sd\n", id, action)
		return err
	})
}
