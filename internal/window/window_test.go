package window

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, spec string) *Spec {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		t.Fatalf("Parse(%q): %v", spec, err)
	}
	return s
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct{ spec, canon string }{
		{"Mon-Fri 09:00-17:30 Europe/Berlin", "Mon-Fri 09:00-17:30 Europe/Berlin"},
		{"not 01:00-06:00 Asia/Shanghai", "not 01:00-06:00 Asia/Shanghai"},
		{"22:00-06:00", "22:00-06:00 UTC"},
		{"Sat,Sun 00:00-24:00", "Sat,Sun 00:00-24:00 UTC"},
		{"09:00:30-09:00:45 UTC", "09:00:30-09:00:45 UTC"},
		{"  NOT  mon-WED,fri   08:00:00-24:00:00 utc ", "not Mon-Wed,Fri 08:00-24:00 UTC"},
		{"Fri-Mon 23:00-01:00:01 America/New_York", "Mon,Fri-Sun 23:00-01:00:01 America/New_York"},
		{"Sun-Sat 00:00-24:00", "00:00-24:00 UTC"},
		{"Tue-Tue,Thu 22:00-00:00", "Tue,Thu 22:00-00:00 UTC"},
		{"Sat-Tue 10:00-11:00", "Mon,Tue,Sat,Sun 10:00-11:00 UTC"},
	}
	for _, c := range cases {
		s := mustParse(t, c.spec)
		if got := s.String(); got != c.canon {
			t.Errorf("Parse(%q).String() = %q, want %q", c.spec, got, c.canon)
		}
		again := mustParse(t, s.String())
		if again.not != s.not || again.days != s.days || again.start != s.start ||
			again.end != s.end || again.loc.String() != s.loc.String() {
			t.Errorf("Parse(%q) round trip: %+v != %+v", c.spec, again, s)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ spec, want string }{
		{"", `window "": empty spec`},
		{"   ", "empty spec"},
		{"Mon-Fri 9-17", `window "Mon-Fri 9-17": time range "9-17" must be HH:MM-HH:MM[:SS]`},
		{"9:00-17:00", `time range "9:00-17:00" must be HH:MM-HH:MM[:SS]`},
		{"09:00", `time range "09:00" must be HH:MM-HH:MM[:SS]`},
		{"09:00-10:00-11:00", `time range "09:00-10:00-11:00" must be`},
		{"09:+1-10:00", `time range "09:+1-10:00" must be HH:MM`},
		{"09:60-10:00", `time range "09:60-10:00" has out-of-range time "09:60"`},
		{"25:00-10:00", `out-of-range time "25:00"`},
		{"10:00-24:00:01", `out-of-range time "24:00:01"`},
		{"24:00-10:00", "24:00 only as its end"},
		{"10:00-10:00:00", "is empty (start equals end)"},
		{"Mon-Fry 10:00-11:00", `weekdays "Mon-Fry": "Mon-Fry" is not a day or day range`},
		{"Mon,,Tue 10:00-11:00", `"" is not a day`},
		{"Monday 10:00-11:00", `"Monday" is not a day`},
		{"not", "missing time range"},
		{"Mon", "missing time range"},
		{"not not 10:00-11:00", `"not" must come first`},
		{"Mon not 10:00-11:00", `"not" must come first`},
		{"Mon Tue 10:00-11:00", `duplicate weekdays "Tue"`},
		{"10:00-11:00 12:00-13:00", `duplicate time range "12:00-13:00"`},
		{"10:00-11:00 Mon", `weekdays "Mon" must come before the time range`},
		{"10:00-11:00 Mars/Olympus", `zone "Mars/Olympus" does not load`},
		{"10:00-11:00 Local", `unexpected "Local"`},
		{"10:00-11:00 UTC UTC", `unexpected "UTC" after the time zone`},
		{"10:00-11:00 UTC not", `unexpected "not" after the time zone`},
		{"Europe/Berlin 10:00-11:00", `weekdays "Europe/Berlin"`},
	}
	for _, c := range cases {
		s, err := Parse(c.spec)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want error containing %q", c.spec, s, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) error %q, want it to contain %q", c.spec, err, c.want)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	// 2026-06-01 is a Monday; Berlin is UTC+2 and Shanghai UTC+8 then.
	cases := []struct {
		spec string
		at   string
		want bool
	}{
		{"Mon-Fri 09:00-17:30 Europe/Berlin", "2026-06-01T06:59:59Z", false},
		{"Mon-Fri 09:00-17:30 Europe/Berlin", "2026-06-01T07:00:00Z", true},
		{"Mon-Fri 09:00-17:30 Europe/Berlin", "2026-06-01T15:29:59.999Z", true},
		{"Mon-Fri 09:00-17:30 Europe/Berlin", "2026-06-01T15:30:00Z", false},
		{"Mon-Fri 09:00-17:30 Europe/Berlin", "2026-06-06T08:00:00Z", false},
		{"22:00-06:00", "2026-06-01T21:59:59Z", false},
		{"22:00-06:00", "2026-06-01T22:00:00Z", true},
		{"22:00-06:00", "2026-06-02T05:59:59Z", true},
		{"22:00-06:00", "2026-06-02T06:00:00Z", false},
		{"Fri 22:00-02:00", "2026-06-05T01:00:00Z", false}, // Thursday night: not a start day
		{"Fri 22:00-02:00", "2026-06-05T22:00:00Z", true},
		{"Fri 22:00-02:00", "2026-06-06T01:59:59Z", true}, // Saturday, started Friday
		{"Fri 22:00-02:00", "2026-06-06T02:00:00Z", false},
		{"Fri 22:00-02:00", "2026-06-06T22:00:00Z", false},
		{"not 01:00-06:00 Asia/Shanghai", "2026-06-01T16:59:59Z", true},
		{"not 01:00-06:00 Asia/Shanghai", "2026-06-01T17:00:00Z", false},
		{"not 01:00-06:00 Asia/Shanghai", "2026-06-01T21:59:59Z", false},
		{"not 01:00-06:00 Asia/Shanghai", "2026-06-01T22:00:00Z", true},
		{"Sat,Sun 00:00-24:00", "2026-06-05T23:59:59Z", false},
		{"Sat,Sun 00:00-24:00", "2026-06-06T00:00:00Z", true},
		{"Sat,Sun 00:00-24:00", "2026-06-07T23:59:59Z", true},
		{"Sat,Sun 00:00-24:00", "2026-06-08T00:00:00Z", false},
		{"09:00:30-09:00:45 UTC", "2026-06-01T09:00:29.999Z", false},
		{"09:00:30-09:00:45 UTC", "2026-06-01T09:00:30Z", true},
		{"09:00:30-09:00:45 UTC", "2026-06-01T09:00:44.999Z", true},
		{"09:00:30-09:00:45 UTC", "2026-06-01T09:00:45Z", false},
		{"Sun 22:00-00:00", "2026-06-07T23:59:59Z", true},
		{"Sun 22:00-00:00", "2026-06-08T00:00:00Z", false},
	}
	for _, c := range cases {
		if got := mustParse(t, c.spec).Open(utc(c.at)); got != c.want {
			t.Errorf("%q Open(%s) = %v, want %v", c.spec, c.at, got, c.want)
		}
	}
}

func TestNextNever(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"00:00-24:00", "not Mon-Sun 00:00-24:00 Europe/Berlin"} {
		s := mustParse(t, spec)
		want := !strings.HasPrefix(spec, "not")
		for _, at := range []string{"2026-03-29T01:00:00Z", "2027-11-07T06:30:00Z"} {
			if n, ok := s.Next(utc(at)); ok {
				t.Errorf("%q Next(%s) = %v, want ok=false", spec, at, n)
			}
			if got := s.Open(utc(at)); got != want {
				t.Errorf("%q Open(%s) = %v, want %v", spec, at, got, want)
			}
		}
	}
}

// TestNextDST checks the documented behaviour on US DST days: on spring
// forward (2027-03-14, 02:00 EST → 03:00 EDT) a window inside the gap does not
// open at all, and a boundary in the gap takes effect when the gap ends; on
// fall back (2027-11-07, 02:00 EDT → 01:00 EST) the window follows the wall
// clock through both occurrences of the repeated hour.
func TestNextDST(t *testing.T) {
	t.Parallel()
	cases := []struct {
		spec, from string
		changes    []string // successive Next results
	}{
		// Never opens on 2027-03-14; the next change is 02:00 EDT on Monday.
		{"02:00-03:00 America/New_York", "2027-03-14T05:00:00Z", []string{"2027-03-15T06:00:00Z", "2027-03-15T07:00:00Z"}},
		// Opens at the end of the gap (03:00 EDT), closes at 04:00 EDT.
		{"02:30-04:00 America/New_York", "2027-03-14T05:00:00Z", []string{"2027-03-14T07:00:00Z", "2027-03-14T08:00:00Z"}},
		// Closes at the end of the gap: one real hour open.
		{"01:00-02:30 America/New_York", "2027-03-14T05:00:00Z", []string{"2027-03-14T06:00:00Z", "2027-03-14T07:00:00Z"}},
		// Two real hours: 01:00 EDT (05:00Z) to 02:00 EST (07:00Z).
		{"01:00-02:00 America/New_York", "2027-11-07T04:00:00Z", []string{"2027-11-07T05:00:00Z", "2027-11-07T07:00:00Z"}},
		// Open for each half hour 01:00-01:30, once in EDT and once in EST.
		{"01:00-01:30 America/New_York", "2027-11-07T04:00:00Z", []string{
			"2027-11-07T05:00:00Z", "2027-11-07T05:30:00Z", "2027-11-07T06:00:00Z", "2027-11-07T06:30:00Z"}},
		// Lord Howe springs forward 02:00 → 02:30 (+10:30 → +11) on 2026-10-04.
		{"01:30-02:15 Australia/Lord_Howe", "2026-10-03T14:00:00Z", []string{"2026-10-03T15:00:00Z", "2026-10-03T15:30:00Z"}},
	}
	for _, c := range cases {
		s := mustParse(t, c.spec)
		at := utc(c.from)
		for _, want := range c.changes {
			n, ok := s.Next(at)
			if !ok || !n.Equal(utc(want)) {
				t.Errorf("%q Next(%s) = %v, %v, want %s", c.spec, at.UTC().Format(time.RFC3339), n.UTC(), ok, want)
				break
			}
			at = n
		}
	}

	s := mustParse(t, "02:00-03:00 America/New_York")
	for u := utc("2027-03-14T05:00:00Z"); u.Before(utc("2027-03-15T04:00:00Z")); u = u.Add(time.Second) {
		if s.Open(u) {
			t.Fatalf("%v Open(%v) = true on the spring-forward day", s, u)
		}
	}
	if n, _ := s.Next(utc("2027-03-14T05:00:00Z").In(time.Local)); n.Location() != time.Local {
		t.Errorf("Next returned location %v, want t's location", n.Location())
	}
}

var (
	propZones  = []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Shanghai"}
	propRanges = []string{
		"02:30-03:00", "01:00-02:00", "Sun 02:00-03:00", "01:30-02:15", "not Mon-Fri 09:00-17:30",
		"Fri 22:00-02:30", "00:00:10-23:59:50", "Sat,Sun 00:00-24:00", "not Wed 02:15-01:45",
	}
)

// checkNext verifies the contract of Next at t: Open is constant on
// [t, next) at sample points and differs at next.
func checkNext(t *testing.T, s *Spec, at time.Time) {
	t.Helper()
	n, ok := s.Next(at)
	if !ok {
		t.Fatalf("%v Next(%v): ok=false", s, at)
	}
	cur := s.Open(at)
	if !n.After(at) || n.Sub(at) > 15*24*time.Hour {
		t.Fatalf("%v Next(%v) = %v: not within 15 days after", s, at, n)
	}
	if s.Open(n) == cur {
		t.Fatalf("%v Next(%v) = %v, but Open is %v at both", s, at, n, cur)
	}
	for u := at.Add(7 * time.Minute); u.Before(n); u = u.Add(7 * time.Minute) {
		if s.Open(u) != cur {
			t.Fatalf("%v Next(%v) = %v, but Open changes by %v", s, at, n, u)
		}
	}
	if last := n.Add(-time.Second); !last.Before(at) && s.Open(last) != cur {
		t.Fatalf("%v Next(%v) = %v, but Open changes by %v", s, at, n, last)
	}
}

func TestNextProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	from := utc("2026-01-01T00:00:00Z").Unix()
	const span = 2 * 365 * 24 * 3600
	for _, z := range propZones {
		for _, r := range propRanges {
			s := mustParse(t, r+" "+z)
			for range 200 {
				at := time.Unix(from+rng.Int64N(span), rng.Int64N(2)*rng.Int64N(1e9))
				checkNext(t, s, at)
			}
		}
	}
}

// TestNextExhaustive walks every second of the hours around each DST
// transition in 2026-2027 and checks that the changes of Open are exactly
// the chain of Next results.
func TestNextExhaustive(t *testing.T) {
	t.Parallel()
	for _, z := range propZones {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		var transitions []time.Time
		for u := utc("2026-01-01T00:00:00Z").In(loc); ; {
			_, end := u.ZoneBounds()
			if end.IsZero() || end.Year() > 2027 {
				break
			}
			transitions = append(transitions, end)
			u = end
		}
		for _, r := range propRanges {
			s := mustParse(t, r+" "+z)
			for _, tr := range transitions {
				u, stop := tr.Add(-3*time.Hour), tr.Add(3*time.Hour)
				prev := s.Open(u)
				next, _ := s.Next(u)
				for u = u.Add(time.Second); u.Before(stop); u = u.Add(time.Second) {
					open := s.Open(u)
					changed := open != prev
					if changed != u.Equal(next) {
						t.Fatalf("%v: Open changes at %v: %v, but Next said %v", s, u, changed, next)
					}
					if changed {
						next, _ = s.Next(u)
					}
					prev = open
				}
			}
		}
	}
}

func BenchmarkNext(b *testing.B) {
	s, _ := Parse("Mon-Fri 09:00-17:30 Europe/Berlin")
	at := utc("2026-06-06T12:00:00Z")
	for b.Loop() {
		s.Next(at)
	}
}
