package worker

import (
	"testing"

	"github.com/rediq/rediq"
)

func TestPlanSharesFreeSlots(t *testing.T) {
	t.Parallel()
	app, err := rediq.New(rediq.Config{RedisURL: "redis://127.0.0.1:1"}) // never dialled
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	cases := []struct {
		name   string
		cfg    Config
		ready  []bool // per queue a, b, c
		free   int
		rotate int
		want   map[string]int
	}{
		{"fair", Config{Queues: []string{"a", "b", "c"}, SkipDefaultQueue: true}, []bool{true, true, true}, 9, 0,
			map[string]int{"a": 3, "b": 3, "c": 3}},
		{"fair remainder rotates", Config{Queues: []string{"a", "b", "c"}, SkipDefaultQueue: true}, []bool{true, true, true}, 2, 1,
			map[string]int{"b": 1, "c": 1}},
		{"weights", Config{Queues: []string{"a", "b", "c"}, SkipDefaultQueue: true, Weights: map[string]int{"a": 3, "c": 2}},
			[]bool{true, true, true}, 12, 0, map[string]int{"a": 6, "b": 2, "c": 4}},
		{"only ready queues", Config{Queues: []string{"a", "b", "c"}, SkipDefaultQueue: true}, []bool{false, true, false}, 5, 0,
			map[string]int{"b": 5}},
		{"strict takes the first ready", Config{Queues: []string{"a", "b", "c"}, SkipDefaultQueue: true, StrictPriority: true},
			[]bool{false, true, true}, 5, 0, map[string]int{"b": 5}},
		{"no free slots", Config{Queues: []string{"a", "b", "c"}, SkipDefaultQueue: true}, []bool{true, true, true}, 0, 0,
			map[string]int{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := New(app, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, q := range w.queues {
				q.ready.Store(c.ready[i])
			}
			reqs, qs := w.plan(c.free, c.rotate)
			got := map[string]int{}
			for i, r := range reqs {
				got[qs[i].Name] = r.N
				if qs[i].ready.Load() {
					t.Errorf("queue %s still ready after being asked", qs[i].Name)
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("plan %v, want %v", got, c.want)
			}
			for q, n := range c.want {
				if got[q] != n {
					t.Fatalf("plan %v, want %v", got, c.want)
				}
			}
		})
	}
}
