package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/jedib0t/go-pretty/v6/text"
)

// plainStyle draws no borders or rules: columns two spaces apart, left-aligned
// (numbers too), headers as given. Such a table reads well and still splits on
// whitespace for awk or cut.
var plainStyle = table.Style{
	Name:    "rediq",
	Box:     table.BoxStyle{MiddleVertical: "  ", PageSeparator: "\n"},
	Format:  table.FormatOptions{Header: text.FormatDefault, Row: text.FormatDefault, Footer: text.FormatDefault},
	Options: table.Options{SeparateColumns: true},
	Size:    table.SizeOptionsDefault,
}

// newTable returns a table in plainStyle with the given header (none if
// empty); its columns are left-aligned whatever their contents.
func newTable(header ...any) table.Writer {
	t := table.NewWriter()
	t.SetStyle(plainStyle)
	t.SuppressTrailingSpaces()
	if len(header) > 0 {
		t.AppendHeader(table.Row(header))
		cfgs := make([]table.ColumnConfig, len(header))
		for i := range cfgs {
			cfgs[i] = table.ColumnConfig{Number: i + 1, Align: text.AlignLeft}
		}
		t.SetColumnConfigs(cfgs)
	}
	return t
}

// printTable writes t to w, ending in a newline.
func printTable(w io.Writer, t table.Writer) error {
	_, err := fmt.Fprintln(w, t.Render())
	return err
}

// printJSON writes v to w as indented JSON, without escaping <, > and & (the
// output is for a terminal or jq, not a web page).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// compactJSON returns raw on one line, for a table cell.
func compactJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

// timeLayout shows a time to people: local, to the second, with the zone.
const timeLayout = "2006-01-02 15:04:05 MST"

// localTime shows t as local time and how long ago (or how far ahead) it is
// from now: "2025-03-01 14:02:03 CET (2m3s ago)". The zero time, which a
// record uses for unknown or not applicable, shows as "-".
func localTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(timeLayout) + " (" + relative(t, now) + ")"
}

// relative says how far t is from now: "2m3s ago", "in 1h5m", "now".
func relative(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d >= time.Second:
		return age(d) + " ago"
	case d <= -time.Second:
		return "in " + age(-d)
	}
	return "now"
}

// age renders a positive duration to the precision people read it in: seconds
// under an hour, minutes under two days, then hours.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// oneLine fits s into a table cell: line breaks and tabs become spaces, and
// past max runes it is cut with an ellipsis.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
