package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/rediq/rediq"
)

// taskJSON is a task as --output json prints it. Times are RFC 3339 in UTC and
// left out when unknown or not applicable; args and result are JSON values.
type taskJSON struct {
	ID          rediq.TaskID    `json:"id"`
	Name        string          `json:"name"`
	Queue       string          `json:"queue"`
	State       rediq.TaskState `json:"state"`
	Priority    int             `json:"priority"`
	Args        json.RawMessage `json:"args"`
	Result      json.RawMessage `json:"result,omitempty"` // succeeded with Retention only
	EnqueuedAt  time.Time       `json:"enqueued_at,omitzero"`
	DueAt       time.Time       `json:"due_at,omitzero"`
	StartedAt   time.Time       `json:"started_at,omitzero"`
	FinishedAt  time.Time       `json:"finished_at,omitzero"`
	ExpiresAt   time.Time       `json:"expires_at,omitzero"`
	Retried     int             `json:"retried"`
	MaxRetries  *int            `json:"max_retries,omitempty"` // left out when unknown
	Running     *bool           `json:"running,omitempty"`     // active: its handler has started (false: prefetched)
	Recovered   int             `json:"recovered"`
	LastError   string          `json:"last_error,omitempty"`
	Worker      string          `json:"worker,omitempty"`
	RetentionMs int64           `json:"retention_ms,omitempty"`
}

func newTaskJSON(r *rediq.TaskRecord) taskJSON {
	j := taskJSON{
		ID: r.ID, Name: r.Name, Queue: r.Queue, State: r.State, Priority: r.Priority,
		Args:       jsonValue(r.Args),
		EnqueuedAt: utc(r.EnqueuedAt), DueAt: utc(r.DueAt), StartedAt: utc(r.StartedAt),
		FinishedAt: utc(r.FinishedAt), ExpiresAt: utc(r.ExpiresAt),
		Retried: r.Retried, Recovered: r.Recovered, LastError: r.LastError, Worker: r.Worker,
		RetentionMs: r.Retention.Milliseconds(),
	}
	if r.Result != nil {
		j.Result = jsonValue(r.Result)
	}
	if r.MaxRetries >= 0 {
		j.MaxRetries = &r.MaxRetries
	}
	return j
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// jsonValue is msgpackJSON for a field of a record: msgpack it cannot read
// (an extension type of another program, say) becomes an object holding the
// bytes and the reason, rather than failing the whole listing.
func jsonValue(raw []byte) json.RawMessage {
	v, err := msgpackJSON(raw)
	if err == nil {
		return v
	}
	b, _ := json.Marshal(map[string]string{
		"msgpack_base64": base64.StdEncoding.EncodeToString(raw), "error": err.Error()})
	return b
}

// textValue is msgpackJSON for a table cell.
func textValue(raw []byte) string {
	v, err := msgpackJSON(raw)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return compactJSON(v)
}

// taskTable lays a task out as field and value, one per line, for people;
func taskTable(r *rediq.TaskRecord, now time.Time) table.Writer {
	t := newTable()
	result := "-"
	if r.Result != nil {
		result = textValue(r.Result)
	}
	retention := "-"
	if r.Retention > 0 {
		retention = r.Retention.String()
	}
	started := localTime(r.StartedAt, now)
	switch {
	case r.State == rediq.StateActive && r.Running:
		// Redis learns when an attempt started only when it ends.
		started = "running now (the start time is recorded when the attempt ends)"
	case r.State == rediq.StateActive:
		started = "not yet: fetched by the worker, waiting for a free handler"
	}
	maxRetries := strconv.Itoa(r.MaxRetries)
	if r.MaxRetries < 0 {
		maxRetries = fmt.Sprintf("as registered (rediq.Retries; default %d): not stored with the task", rediq.DefaultRetries)
	}
	for _, kv := range [][2]string{
		{"ID", string(r.ID)},
		{"Name", r.Name},
		{"Queue", r.Queue},
		{"State", string(r.State)},
		{"Priority", strconv.Itoa(r.Priority)},
		{"Args", textValue(r.Args)},
		{"Result", result},
		{"Enqueued", localTime(r.EnqueuedAt, now)},
		{"Due", localTime(r.DueAt, now)},
		{"Started", started},
		{"Finished", localTime(r.FinishedAt, now)},
		{"Expires", localTime(r.ExpiresAt, now)},
		{"Retried", retried(r)},
		{"Max retries", maxRetries},
		{"Recovered", strconv.Itoa(r.Recovered)},
		{"Worker", orDash(r.Worker)},
		{"Retention", retention},
		{"Last error", orDash(r.LastError)},
	} {
		t.AppendRow(table.Row{kv[0], kv[1]})
	}
	return t
}

// retried shows the failed attempts retried so far, against the task's
// retries when this App knows them: "1/3".
func retried(r *rediq.TaskRecord) string {
	if r.MaxRetries < 0 {
		return strconv.Itoa(r.Retried)
	}
	return strconv.Itoa(r.Retried) + "/" + strconv.Itoa(r.MaxRetries)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
