// Package cronspec parses cron specs and computes their tick times.
//
// Ticks are identified by their instant, so every process that parses the
// same spec with the same location computes the same ticks. Daylight saving
// transitions are resolved as follows:
//
//   - A spec whose hour field matches every hour (such as "*/15 * * * *" or
//     "@hourly") runs on elapsed time: it ticks at every instant whose wall
//     clock matches, so a repeated hour ticks twice and a skipped hour not at
//     all.
//   - Any other spec ticks once per matching wall-clock time: a time that
//     occurs twice ticks at its first occurrence only, and a time skipped by a
//     forward jump ticks at the instant of the jump. Several skipped times
//     collapse into that single tick.
//
// "@every d" schedules ignore the location: their ticks are the instants
// k*d after 1970-01-01T00:00:00Z, for integer k.
package cronspec

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// maxLookback bounds the search of [Schedule.Prev].
const maxLookback = 5 * 366 * 24 * time.Hour

// allHours is the bit set of a cron hour field that matches every hour.
const allHours = 1<<24 - 1

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a parsed cron spec bound to a location.
type Schedule struct {
	spec    string
	loc     *time.Location
	every   time.Duration     // > 0 for "@every" schedules
	fields  cron.SpecSchedule // matches wall-clock times expressed in UTC
	elapsed bool              // the hour field matches every hour
}

// Parse parses a cron spec for the location loc; a nil loc means UTC.
//
// It accepts the 5-field form "minute hour day-of-month month day-of-week",
// the 6-field form with a leading seconds field, the descriptors @yearly,
// @annually, @monthly, @weekly, @daily, @midnight and @hourly, and
// "@every <duration>" with a [time.ParseDuration] duration of at least 1ms.
// A CRON_TZ= or TZ= prefix is rejected; the zone is given by loc.
func Parse(spec string, loc *time.Location) (*Schedule, error) {
	spec = strings.TrimSpace(spec)
	if loc == nil {
		loc = time.UTC
	}
	fail := func(format string, args ...any) (*Schedule, error) {
		return nil, fmt.Errorf("cron spec %q: %s", spec, fmt.Sprintf(format, args...))
	}
	s := &Schedule{spec: spec, loc: loc}
	switch f := strings.Fields(spec); {
	case len(f) == 0:
		return fail("empty")
	case strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ="):
		return fail("time zone prefix not supported; the location is given separately")
	case f[0] == "@every":
		if len(f) != 2 {
			return fail("want @every <duration>")
		}
		d, err := time.ParseDuration(f[1])
		if err != nil {
			return fail("%v", err)
		}
		if d < time.Millisecond {
			// Ticks are keyed by millisecond; shorter intervals would collide.
			return fail("@every interval %v is shorter than 1ms", d)
		}
		s.every = d
		return s, nil
	}
	parsed, err := parser.Parse(spec)
	if err != nil {
		return fail("%v", err)
	}
	s.fields = *parsed.(*cron.SpecSchedule)
	s.fields.Location = time.UTC
	s.elapsed = s.fields.Hour&allHours == allHours
	// Five years from a leap year cover every satisfiable day and month.
	if s.fields.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return fail("never matches")
	}
	return s, nil
}

// String returns the spec as given to [Parse], trimmed of surrounding space.
func (s *Schedule) String() string { return s.spec }

// Location returns the location the schedule is evaluated in.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first tick strictly after t, in the schedule's location.
// It returns the zero time if there is none within about five years.
func (s *Schedule) Next(t time.Time) time.Time {
	switch {
	case s.every > 0:
		p, ok := s.floor(t)
		if !ok || p > math.MaxInt64-int64(s.every) {
			return time.Time{}
		}
		return time.Unix(0, p+int64(s.every)).In(s.loc)
	case s.elapsed:
		return s.nextElapsed(t)
	default:
		return s.nextWall(t)
	}
}

// Prev returns the latest tick at or before t, in the schedule's location.
// It reports false if there is no tick within about five years before t.
func (s *Schedule) Prev(t time.Time) (time.Time, bool) {
	if s.every > 0 {
		p, ok := s.floor(t)
		if !ok {
			return time.Time{}, false
		}
		return time.Unix(0, p).In(s.loc), true
	}
	// Next is monotonic, and Next(x) <= t exactly when x precedes the
	// wanted tick. Widen the window until it holds a tick, then bisect.
	hasTick := func(x time.Time) bool {
		n := s.Next(x)
		return !n.IsZero() && !n.After(t)
	}
	var lo time.Time
	for w := time.Second; ; w *= 2 {
		w = min(w, maxLookback)
		if hasTick(t.Add(-w)) {
			lo = t.Add(-w)
			break
		}
		if w == maxLookback {
			return time.Time{}, false
		}
	}
	for hi := t; hi.Sub(lo) > time.Nanosecond; {
		if mid := lo.Add(hi.Sub(lo) / 2); hasTick(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return s.Next(lo), true
}

// floor returns the latest "@every" tick at or before t in Unix nanoseconds,
// and false if that is out of range.
func (s *Schedule) floor(t time.Time) (int64, bool) {
	if sec := t.Unix(); sec <= math.MinInt64/int64(time.Second) || sec >= math.MaxInt64/int64(time.Second) {
		return 0, false
	}
	n, d := t.UnixNano(), int64(s.every)
	m := n % d
	if m < 0 {
		m += d
	}
	if n < math.MinInt64+m {
		return 0, false
	}
	return n - m, true
}

// nextElapsed returns the first instant after t whose wall clock matches.
// Within one zone period wall clock and instant advance together, so the
// search runs period by period.
func (s *Schedule) nextElapsed(t time.Time) time.Time {
	lb := s.wall(t)
	for range 64 {
		lt := t.In(s.loc)
		_, off := lt.Zone()
		_, end := lt.ZoneBounds()
		w := s.fields.Next(lb)
		if w.IsZero() {
			return time.Time{}
		}
		if u := w.Add(-time.Duration(off) * time.Second); end.IsZero() || u.Before(end) {
			return u.In(s.loc)
		}
		t = end
		lb = s.wall(end).Add(-time.Nanosecond)
	}
	return time.Time{}
}

// nextWall returns the first tick after t of a schedule that ticks once per
// matching wall-clock time.
func (s *Schedule) nextWall(t time.Time) time.Time {
	// Times up to the latest wall clock reached by t have ticked already,
	// including those repeated after a backward jump that t lies in.
	hw := s.wall(t)
	if start, _ := t.In(s.loc).ZoneBounds(); !start.IsZero() {
		if w := s.wall(start.Add(-time.Nanosecond)); w.After(hw) {
			hw = w
		}
	}
	w := s.fields.Next(hw)
	if w.IsZero() {
		return time.Time{}
	}
	return s.first(w)
}

// first returns the first instant whose wall clock is w, or, if the wall
// clock skips w, the instant at which it jumps over w.
func (s *Schedule) first(w time.Time) time.Time {
	g := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, s.loc)
	start, end := g.ZoneBounds()
	switch gw := s.wall(g); {
	case gw.After(w): // g lies after the gap
		return start
	case gw.Before(w): // g lies before the gap
		return end
	}
	if !start.IsZero() {
		_, off := start.Add(-time.Nanosecond).Zone()
		u := w.Add(-time.Duration(off) * time.Second)
		if u.Before(start) && s.wall(u).Equal(w) {
			return u.In(s.loc)
		}
	}
	return g
}

// wall returns the wall clock of t in the schedule's location, expressed as
// a time in UTC.
func (s *Schedule) wall(t time.Time) time.Time {
	_, off := t.In(s.loc).Zone()
	return t.UTC().Add(time.Duration(off) * time.Second)
}
