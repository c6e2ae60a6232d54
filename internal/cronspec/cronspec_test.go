package cronspec

import (
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

func mustParse(t *testing.T, spec string, loc *time.Location) *Schedule {
	t.Helper()
	s, err := Parse(spec, loc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ticks returns the ticks of s in [from, to), failing if they do not increase.
func ticks(t *testing.T, s *Schedule, from, to time.Time) []time.Time {
	t.Helper()
	var out []time.Time
	for n := s.Next(from.Add(-time.Nanosecond)); !n.IsZero() && n.Before(to); n = s.Next(n) {
		if len(out) > 0 && !n.After(out[len(out)-1]) {
			t.Fatalf("%q: Next(%v) = %v does not advance", s, out[len(out)-1], n)
		}
		out = append(out, n)
	}
	return out
}

func TestDST(t *testing.T) {
	t.Parallel()
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		zone, spec string
		day        string // civil date in zone
		want       []time.Time
	}{
		// New York: 02:00 EST -> 03:00 EDT; 02:00 EDT -> 01:00 EST.
		{"America/New_York", "30 2 * * *", "2027-03-14", []time.Time{utc("2027-03-14T07:00:00Z")}},
		{"America/New_York", "30 2 * * *", "2027-11-07", []time.Time{utc("2027-11-07T07:30:00Z")}},
		{"America/New_York", "30 1 * * *", "2027-11-07", []time.Time{utc("2027-11-07T05:30:00Z")}},
		{"America/New_York", "30 2 * * *", "2027-03-15", []time.Time{utc("2027-03-15T06:30:00Z")}},
		// Berlin: 02:00 CET -> 03:00 CEST; 03:00 CEST -> 02:00 CET.
		{"Europe/Berlin", "30 2 * * *", "2027-03-28", []time.Time{utc("2027-03-28T01:00:00Z")}},
		{"Europe/Berlin", "30 2 * * *", "2027-10-31", []time.Time{utc("2027-10-31T00:30:00Z")}},
		{"Europe/Berlin", "30 2 * * *", "2027-10-30", []time.Time{utc("2027-10-30T00:30:00Z")}},
		// Lord Howe: 02:00 +1030 -> 02:30 +11; 02:00 +11 -> 01:30 +1030.
		// 02:30 itself is never skipped nor repeated there.
		{"Australia/Lord_Howe", "30 2 * * *", "2027-10-03", []time.Time{utc("2027-10-02T15:30:00Z")}},
		{"Australia/Lord_Howe", "30 2 * * *", "2027-04-04", []time.Time{utc("2027-04-03T16:00:00Z")}},
		{"Australia/Lord_Howe", "15 2 * * *", "2027-10-03", []time.Time{utc("2027-10-02T15:30:00Z")}},
		{"Australia/Lord_Howe", "45 1 * * *", "2027-04-04", []time.Time{utc("2027-04-03T14:45:00Z")}},
		{"Australia/Lord_Howe", "15 2 * * *", "2027-04-04", []time.Time{utc("2027-04-03T15:45:00Z")}},
		{"Australia/Lord_Howe", "30 2 * * *", "2027-06-01", []time.Time{utc("2027-05-31T16:00:00Z")}},
		// Gap times collapse into one tick at the jump.
		{"America/New_York", "*/20 2,3 * * *", "2027-03-14", []time.Time{
			utc("2027-03-14T07:00:00Z"), utc("2027-03-14T07:20:00Z"), utc("2027-03-14T07:40:00Z"),
		}},
	}
	for _, tt := range tests {
		loc := mustLoad(t, tt.zone)
		s := mustParse(t, tt.spec, loc)
		d, err := time.ParseInLocation(time.DateOnly, tt.day, loc)
		if err != nil {
			t.Fatal(err)
		}
		got := ticks(t, s, d, d.AddDate(0, 0, 1))
		if len(got) != len(tt.want) {
			t.Errorf("%s %q on %s: %d ticks %v, want %v", tt.zone, tt.spec, tt.day, len(got), got, tt.want)
			continue
		}
		for i := range got {
			if !got[i].Equal(tt.want[i]) {
				t.Errorf("%s %q on %s: tick %d = %v, want %v", tt.zone, tt.spec, tt.day, i, got[i], tt.want[i].In(loc))
			}
		}
	}
}

func TestDSTElapsed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		zone, spec, day string
		want            int
	}{
		{"America/New_York", "@hourly", "2027-03-14", 23},
		{"America/New_York", "@hourly", "2027-11-07", 25},
		{"America/New_York", "*/15 * * * *", "2027-11-07", 100},
		{"Europe/Berlin", "*/15 * * * *", "2027-03-28", 92},
		{"Australia/Lord_Howe", "@hourly", "2027-10-03", 23},
		{"Australia/Lord_Howe", "@hourly", "2027-04-04", 24},
		{"Australia/Lord_Howe", "*/30 * * * *", "2027-04-04", 49},
	}
	for _, tt := range tests {
		loc := mustLoad(t, tt.zone)
		d, _ := time.ParseInLocation(time.DateOnly, tt.day, loc)
		got := ticks(t, mustParse(t, tt.spec, loc), d, d.AddDate(0, 0, 1))
		if len(got) != tt.want {
			t.Errorf("%s %q on %s: %d ticks, want %d", tt.zone, tt.spec, tt.day, len(got), tt.want)
		}
	}
}

func TestSeconds(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "*/10 * * * * *", nil)
	base := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct{ in, want time.Duration }{
		{0, 10 * time.Second},
		{3500 * time.Millisecond, 10 * time.Second},
		{10 * time.Second, 20 * time.Second},
		{59 * time.Second, 60 * time.Second},
	} {
		if got := s.Next(base.Add(c.in)); !got.Equal(base.Add(c.want)) {
			t.Errorf("Next(+%v) = %v, want +%v", c.in, got, c.want)
		}
	}
	if s.Location() != time.UTC {
		t.Errorf("Location() = %v, want UTC", s.Location())
	}
}

func TestEvery(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "@every 100ms", mustLoad(t, "Europe/Berlin"))
	for _, c := range []struct{ in, prev, next int64 }{ // Unix milliseconds
		{1234, 1200, 1300},
		{1200, 1200, 1300},
		{0, 0, 100},
		{-1, -100, 0},
		{1_800_000_000_050, 1_800_000_000_000, 1_800_000_000_100},
	} {
		in := time.UnixMilli(c.in).Add(7 * time.Microsecond)
		if c.in == 1200 || c.in == 0 {
			in = time.UnixMilli(c.in)
		}
		if got := s.Next(in).UnixMilli(); got != c.next {
			t.Errorf("Next(%v) = %d, want %d", in, got, c.next)
		}
		if got, ok := s.Prev(in); !ok || got.UnixMilli() != c.prev {
			t.Errorf("Prev(%v) = %d, %v, want %d", in, got.UnixMilli(), ok, c.prev)
		}
	}
	s = mustParse(t, "@every 90s", nil)
	if got, want := s.Next(time.Unix(100, 0)), time.Unix(180, 0); !got.Equal(want) {
		t.Errorf("@every 90s: Next = %v, want %v", got, want)
	}
}

func TestNextPrevRelations(t *testing.T) {
	t.Parallel()
	ny, lh := mustLoad(t, "America/New_York"), mustLoad(t, "Australia/Lord_Howe")
	scheds := []*Schedule{
		mustParse(t, "30 2 * * *", ny),
		mustParse(t, "30 1 * * *", ny),
		mustParse(t, "@hourly", lh),
		mustParse(t, "15 2 * * *", lh),
		mustParse(t, "45 1 * * *", lh),
		mustParse(t, "*/10 * * * * *", nil),
		mustParse(t, "@every 100ms", nil),
		mustParse(t, "@every 7m", ny),
		mustParse(t, "0 0 29 2 *", nil),
	}
	times := []time.Time{
		time.Date(2027, 3, 14, 1, 59, 59, 999_999_999, ny),
		time.Date(2027, 3, 14, 3, 0, 0, 0, ny),
		time.Date(2027, 11, 7, 5, 30, 0, 0, time.UTC), // 01:30 EDT
		time.Date(2027, 11, 7, 6, 15, 0, 0, time.UTC), // 01:15 EST, wall clock repeats
		time.Date(2027, 11, 7, 6, 30, 0, 0, time.UTC), // 01:30 EST
		time.Date(2027, 4, 3, 15, 5, 0, 0, time.UTC),  // 01:35 +1030, wall clock repeats
		time.Date(2027, 10, 3, 2, 30, 0, 0, lh),
		time.Date(2027, 6, 1, 12, 34, 56, 789, time.UTC),
	}
	for _, s := range scheds {
		for _, at := range times {
			next := s.Next(at)
			prev, ok := s.Prev(at)
			if !ok || next.IsZero() {
				t.Errorf("%q at %v: Prev ok=%v, Next=%v", s, at, ok, next)
				continue
			}
			if prev.After(at) || !next.After(at) {
				t.Errorf("%q at %v: want Prev %v <= t < Next %v", s, at, prev, next)
			}
			if n := s.Next(prev); !n.After(prev) || !n.Equal(next) {
				t.Errorf("%q at %v: Next(Prev) = %v, want %v", s, at, n, next)
			}
			if p, _ := s.Prev(next); !p.Equal(next) {
				t.Errorf("%q at %v: Prev(Next) = %v, want %v", s, at, p, next)
			}
		}
	}
}

func TestPrevCatchUp(t *testing.T) {
	t.Parallel()
	berlin := mustLoad(t, "Europe/Berlin")
	s := mustParse(t, "0 9 * * *", berlin)
	// Last fired 2027-05-10 09:00; three days later the latest missed tick wins.
	for _, c := range []struct{ now, want time.Time }{
		{time.Date(2027, 5, 13, 14, 0, 0, 0, berlin), time.Date(2027, 5, 13, 9, 0, 0, 0, berlin)},
		{time.Date(2027, 5, 13, 8, 59, 59, 0, berlin), time.Date(2027, 5, 12, 9, 0, 0, 0, berlin)},
		{time.Date(2027, 5, 13, 9, 0, 0, 0, berlin), time.Date(2027, 5, 13, 9, 0, 0, 0, berlin)},
	} {
		if got, ok := s.Prev(c.now); !ok || !got.Equal(c.want) {
			t.Errorf("Prev(%v) = %v, %v, want %v", c.now, got, ok, c.want)
		}
	}
	// The last 29 February before 2104 is in 2096, beyond the search bound.
	leap := mustParse(t, "0 0 29 2 *", nil)
	if got, ok := leap.Prev(time.Date(2104, 1, 1, 0, 0, 0, 0, time.UTC)); ok {
		t.Errorf("Prev found %v, want none", got)
	}
	if got, ok := leap.Prev(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); !ok || !got.Equal(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Prev = %v, %v, want 2024-02-29", got, ok)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	at := time.Date(2027, 5, 13, 14, 7, 0, 0, time.UTC) // a Thursday
	for spec, want := range map[string]time.Time{
		"  5 * * * *  ": time.Date(2027, 5, 13, 15, 5, 0, 0, time.UTC),
		"@yearly":       time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC),
		"@annually":     time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC),
		"@monthly":      time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC),
		"@weekly":       time.Date(2027, 5, 16, 0, 0, 0, 0, time.UTC),
		"@daily":        time.Date(2027, 5, 14, 0, 0, 0, 0, time.UTC),
		"@midnight":     time.Date(2027, 5, 14, 0, 0, 0, 0, time.UTC),
		"@hourly":       time.Date(2027, 5, 13, 15, 0, 0, 0, time.UTC),
		"0 9 * * mon":   time.Date(2027, 5, 17, 9, 0, 0, 0, time.UTC),
	} {
		s := mustParse(t, spec, nil)
		if s.String() != strings.TrimSpace(spec) {
			t.Errorf("String() = %q, want %q", s.String(), strings.TrimSpace(spec))
		}
		if got := s.Next(at); !got.Equal(want) {
			t.Errorf("%q: Next = %v, want %v", spec, got, want)
		}
	}

	for _, spec := range []string{
		"", "* * *", "* * * * * * *", "61 * * * *", "* * * * 8", "*/0 * * * *",
		"0 0 30 2 *", "@fortnightly", "@every", "@every 1s 2s", "@every soon",
		"@every 0s", "@every -1s", "@every 999us",
		"CRON_TZ=UTC 0 0 * * *", "TZ=Europe/Berlin 0 0 * * *",
	} {
		_, err := Parse(spec, nil)
		if err == nil {
			t.Errorf("Parse(%q) succeeded", spec)
			continue
		}
		if prefix := `cron spec "` + spec + `": `; !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("Parse(%q) error %q lacks prefix %q", spec, err, prefix)
		}
	}
	if _, err := Parse("* * *", nil); err == nil || !strings.HasPrefix(err.Error(), `cron spec "* * *": expected`) {
		t.Errorf("Parse(\"* * *\") error = %v", err)
	}
}
