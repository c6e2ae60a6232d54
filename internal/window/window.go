// Package window parses and evaluates run windows: the times of day, and
// optionally the weekdays, at which a task may start.
//
// A window spec has the form
//
//	[not] [WEEKDAYS] TIMERANGE [ZONE]
//
// for example "Mon-Fri 09:00-17:30 Europe/Berlin", "not 01:00-06:00 Asia/Shanghai",
// "22:00-06:00" or "Sat,Sun 00:00-24:00". Keywords and day names are
// case-insensitive. WEEKDAYS is a comma-separated list of days (Mon … Sun) or
// day ranges, which may wrap ("Fri-Mon", while "Mon-Mon" is just Monday);
// absent, it means every day.
// TIMERANGE is HH:MM-HH:MM, either side optionally with seconds (HH:MM:SS);
// the start is inclusive and the end exclusive. An end before the start wraps
// past midnight, and the weekday list then applies to the day the window
// starts on. "24:00" is allowed only as an end, so "00:00-24:00" is the whole
// day; a start equal to the end is an error. ZONE is an IANA time zone name
// ("UTC" in any case); the default is UTC.
//
// Windows are evaluated on the wall clock of the zone. When daylight-saving
// time skips an hour, wall-clock times inside the gap never occur: a boundary
// in the gap takes effect at the first instant after it, and a window lying
// entirely inside the gap does not open that day. When an hour repeats, the
// window follows the wall clock through both occurrences.
package window

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

const day = 24 * 60 * 60 // seconds

// Spec is a parsed run window. The zero value is not valid; use Parse.
type Spec struct {
	not        bool
	days       [7]bool // indexed by time.Weekday
	start, end int     // seconds since midnight; end may be day (24:00)
	loc        *time.Location
}

var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// Parse parses a window spec. An empty spec is an error; callers that treat
// "" as "no window" must check for it first.
func Parse(spec string) (*Spec, error) {
	fail := func(format string, args ...any) (*Spec, error) {
		return nil, fmt.Errorf("window %q: %s", spec, fmt.Sprintf(format, args...))
	}
	toks := strings.Fields(spec)
	if len(toks) == 0 {
		return fail("empty spec")
	}
	s := &Spec{loc: time.UTC}
	i := 0
	if strings.EqualFold(toks[0], "not") {
		s.not = true
		i++
	}
	if i < len(toks) && !looksLikeTime(toks[i]) {
		if strings.EqualFold(toks[i], "not") {
			return fail(`"not" must come first, at most once`)
		}
		days, err := parseDays(toks[i])
		if err != nil {
			return fail("%v", err)
		}
		s.days = days
		i++
	} else {
		s.days = [7]bool{true, true, true, true, true, true, true}
	}
	if i == len(toks) {
		return fail("missing time range")
	}
	tr := toks[i]
	if !looksLikeTime(tr) {
		if strings.EqualFold(tr, "not") {
			return fail(`"not" must come first, at most once`)
		}
		if isDays(tr) {
			return fail("duplicate weekdays %q", tr)
		}
	}
	var err error
	if s.start, s.end, err = parseRange(tr); err != nil {
		return fail("time range %q %v", tr, err)
	}
	i++
	if i < len(toks) {
		z := toks[i]
		switch {
		case looksLikeTime(z):
			return fail("duplicate time range %q", z)
		case strings.EqualFold(z, "UTC"):
			s.loc = time.UTC
		case isDays(z):
			return fail("weekdays %q must come before the time range", z)
		case z == "Local" || strings.EqualFold(z, "not"):
			return fail("unexpected %q where a time zone was expected", z)
		default:
			if s.loc, err = time.LoadLocation(z); err != nil {
				return fail("zone %q does not load: %v", z, err)
			}
		}
		i++
	}
	if i < len(toks) {
		return fail("unexpected %q after the time zone", toks[i])
	}
	return s, nil
}

func looksLikeTime(tok string) bool { return tok[0] >= '0' && tok[0] <= '9' }

func parseDays(tok string) ([7]bool, error) {
	var days [7]bool
	for item := range strings.SplitSeq(tok, ",") {
		a, b, isRange := strings.Cut(item, "-")
		from, ok1 := dayIndex(a)
		to, ok2 := from, true
		if isRange {
			to, ok2 = dayIndex(b)
		}
		if !ok1 || !ok2 {
			return days, fmt.Errorf("weekdays %q: %q is not a day or day range (Mon … Sun)", tok, item)
		}
		for d := from; ; d = (d + 1) % 7 {
			days[d] = true
			if d == to {
				break
			}
		}
	}
	return days, nil
}

func isDays(tok string) bool {
	_, err := parseDays(tok)
	return err == nil
}

func dayIndex(name string) (int, bool) {
	for i, n := range dayNames {
		if strings.EqualFold(name, n) {
			return i, true
		}
	}
	return 0, false
}

func parseRange(tok string) (start, end int, err error) {
	a, b, ok := strings.Cut(tok, "-")
	if !ok {
		return 0, 0, errors.New("must be HH:MM-HH:MM[:SS]")
	}
	if start, err = parseClock(a); err != nil {
		return 0, 0, err
	}
	if end, err = parseClock(b); err != nil {
		return 0, 0, err
	}
	switch {
	case start == day:
		return 0, 0, errors.New("may use 24:00 only as its end")
	case start == end:
		return 0, 0, errors.New("is empty (start equals end); use 00:00-24:00 for the whole day")
	}
	return start, end, nil
}

// parseClock parses HH:MM or HH:MM:SS into seconds since midnight.
func parseClock(s string) (int, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, errors.New("must be HH:MM-HH:MM[:SS]")
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if len(p) != 2 || err != nil || p[0] < '0' || p[0] > '9' {
			return 0, errors.New("must be HH:MM-HH:MM[:SS]")
		}
		v[i] = n
	}
	secs := v[0]*3600 + v[1]*60 + v[2]
	if v[0] > 24 || v[1] > 59 || v[2] > 59 || secs > day {
		return 0, fmt.Errorf("has out-of-range time %q", s)
	}
	return secs, nil
}

// String returns the spec in canonical form, which Parse accepts and turns
// into an equal Spec. The zone is always included.
func (s *Spec) String() string {
	var b strings.Builder
	if s.not {
		b.WriteString("not ")
	}
	if !s.allDays() {
		// Runs in Monday-first order; a run of three or more days is a range.
		first := true
		for i := 0; i < 7; {
			if !s.days[(i+1)%7] {
				i++
				continue
			}
			j := i
			for j+1 < 7 && s.days[(j+2)%7] {
				j++
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(dayNames[(i+1)%7])
			if j-i == 1 {
				b.WriteString("," + dayNames[(j+1)%7])
			} else if j-i > 1 {
				b.WriteString("-" + dayNames[(j+1)%7])
			}
			i = j + 1
		}
		b.WriteByte(' ')
	}
	b.WriteString(clock(s.start) + "-" + clock(s.end) + " " + s.loc.String())
	return b.String()
}

func clock(secs int) string {
	if secs%60 == 0 {
		return fmt.Sprintf("%02d:%02d", secs/3600, secs/60%60)
	}
	return fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60)
}

func (s *Spec) allDays() bool { return s.days == [7]bool{true, true, true, true, true, true, true} }

// Location returns the time zone whose wall clock the window follows.
func (s *Spec) Location() *time.Location { return s.loc }

// Open reports whether a task may start at t, after "not" is applied.
func (s *Spec) Open(t time.Time) bool {
	lt := t.In(s.loc)
	h, m, sec := lt.Clock()
	sod := h*3600 + m*60 + sec
	wd := lt.Weekday()
	var in bool
	if s.start < s.end {
		in = s.days[wd] && sod >= s.start && sod < s.end
	} else { // wraps past midnight: the early part belongs to the previous day
		in = s.days[wd] && sod >= s.start || s.days[(wd+6)%7] && sod < s.end
	}
	return in != s.not
}

// Next returns the first instant strictly after t at which Open changes
// value, in t's location. It reports ok=false if Open never changes, as for
// "00:00-24:00" on every day, or its negation.
func (s *Spec) Next(t time.Time) (next time.Time, ok bool) {
	if s.allDays() && s.start == 0 && s.end == day {
		return time.Time{}, false
	}
	cur := s.Open(t)
	from := t.Unix() // a whole-second candidate c is after t iff c > from
	y, m, d := t.In(s.loc).Date()
	base := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() // local midnight, as wall seconds
	// A change is due within 8 days, unless a window lies wholly inside a
	// DST gap and is skipped; so look further, but not forever.
	for range 4 {
		if c, ok := s.scan(cur, from, base); ok {
			return time.Unix(c, 0).In(t.Location()), true
		}
		from, base = base+8*day-14*3600, base+8*day
	}
	return time.Time{}, false
}

// scan returns the first whole second after from, within about nine days,
// at which Open differs from cur. The wall clock of local midnight on the
// first day, read as if it were UTC, is base.
//
// Open is a function of the zone's wall clock, so it can change only where
// the wall clock reads a boundary (start or end, on some day) or jumps (at a
// zone transition). scan gathers all such instants, each boundary at every
// UTC offset in use, and takes the earliest at which Open differs from cur.
// Candidates that are no real boundary (at the wrong offset, or inside a
// gap) are harmless: Open equals cur before the first real change.
func (s *Spec) scan(cur bool, from, base int64) (int64, bool) {
	limit := base + 11*day
	var offBuf [8]int
	offs := offBuf[:0]
	var candBuf [128]int64
	cands := candBuf[:0]
	u := time.Unix(base-2*day, 0).In(s.loc)
	for range 32 { // zone periods overlapping the horizon
		if _, off := u.Zone(); !slices.Contains(offs, off) {
			offs = append(offs, off)
		}
		_, end := u.ZoneBounds()
		if end.IsZero() || end.Unix() > limit {
			break
		}
		if end.Unix() > from {
			cands = append(cands, end.Unix())
		}
		u = end.In(s.loc)
	}
	for dd := int64(-1); dd <= 9; dd++ {
		for _, b := range [2]int{s.start, s.end} {
			w := base + dd*day + int64(b)
			for _, off := range offs {
				if c := w - int64(off); c > from {
					cands = append(cands, c)
				}
			}
		}
	}
	slices.Sort(cands)
	for _, c := range cands {
		if s.Open(time.Unix(c, 0)) != cur {
			return c, true
		}
	}
	return 0, false
}
