package core

import (
	"slices"
	"strings"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/cronspec"
)

// ScheduleDef is a schedule declared in code (rediq.App.Schedule).
type ScheduleDef struct {
	ID            string
	Spec          *cronspec.Schedule
	Queue         string
	Task          string
	Skip          bool // overlap skip
	CatchUpLatest bool
	Jitter        time.Duration
	// Message makes the task of a tick: its id is TickTaskID(ID, tick).
	Message func(now time.Time, taskID string) (broker.Message, error)
	// Declared is the declaration as JSON, for tools without code.
	Declared string
}

// TickTaskID is the id of the task schedule id fires for tick (Unix ms):
// ScheduledTick reads it back.
func TickTaskID(id string, tick int64) string {
	return "cron:" + id + ":" + itoa(tick)
}

// ParseTickTaskID is TickTaskID's inverse.
func ParseTickTaskID(taskID string) (id string, tick int64, ok bool) {
	rest, ok := strings.CutPrefix(taskID, "cron:")
	i := strings.LastIndexByte(rest, ':')
	if !ok || i <= 0 {
		return "", 0, false
	}
	for _, c := range rest[i+1:] {
		if c < '0' || c > '9' {
			return "", 0, false
		}
		tick = tick*10 + int64(c-'0')
	}
	return rest[:i], tick, i+1 < len(rest)
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

// AddSchedule declares s; false if a schedule with its id exists.
func (a *App) AddSchedule(s *ScheduleDef) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.schedules == nil {
		a.schedules = map[string]*ScheduleDef{}
	}
	if _, ok := a.schedules[s.ID]; ok {
		return false
	}
	a.schedules[s.ID] = s
	return true
}

// Schedules answers the schedules declared in code, by id.
func (a *App) Schedules() []*ScheduleDef {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]*ScheduleDef, 0, len(a.schedules))
	for _, s := range a.schedules {
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y *ScheduleDef) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// ScheduleByID answers the schedule declared in code with the id.
func (a *App) ScheduleByID(id string) (*ScheduleDef, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	s, ok := a.schedules[id]
	return s, ok
}
