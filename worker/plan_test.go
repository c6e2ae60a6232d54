package worker

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/rediq/rediq"
)

// planQueues builds plan's view of queues a, b, c from their flags.
func planQueues(ready, recovered []bool, weights ...int) []planQueue {
	qs := make([]planQueue, len(ready))
	for i := range qs {
		qs[i] = planQueue{weight: 1, ready: ready[i], recovered: recovered[i]}
		if i < len(weights) {
			qs[i].weight = weights[i]
		}
	}
	return qs
}

var (
	planAll  = []bool{true, true, true}
	planNone = []bool{false, false, false}
)

func TestPlan(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		in       planInput
		want     []planned
		wantTurn int
	}{
		{"fair", planInput{queues: planQueues(planAll, planNone), free: 9},
			[]planned{{queue: 0, n: 3}, {queue: 1, n: 3}, {queue: 2, n: 3}}, 0},
		{"fair remainder rotates", planInput{queues: planQueues(planAll, planNone), free: 2, rotate: 1},
			[]planned{{queue: 1, n: 1}, {queue: 2, n: 1}}, 0},
		{"weights", planInput{queues: planQueues(planAll, planNone, 3, 1, 2), free: 12},
			[]planned{{queue: 0, n: 6}, {queue: 1, n: 2}, {queue: 2, n: 4}}, 0},
		{"only ready queues", planInput{queues: planQueues([]bool{false, true, false}, planNone), free: 5},
			[]planned{{queue: 1, n: 5}}, 0},
		{"strict takes the first ready", planInput{queues: planQueues([]bool{false, true, true}, planNone), free: 5, strict: true},
			[]planned{{queue: 1, n: 5}}, 0},
		{"no free slots", planInput{queues: planQueues(planAll, planAll), free: 0, mayRecover: true}, nil, 0},
		{"nothing ready", planInput{queues: planQueues(planNone, planNone), free: 5, mayRecover: true}, nil, 0},
		{"idle runners go to the first queues", planInput{queues: planQueues(planAll, planNone), free: 6, idle: 3},
			[]planned{{queue: 0, n: 2, startNow: 2}, {queue: 1, n: 2, startNow: 1}, {queue: 2, n: 2}}, 0},

		// The turn to take a recovered task.
		{"turn goes to the first queue from turn with recovered tasks",
			planInput{queues: planQueues(planAll, []bool{false, true, true}), free: 9, mayRecover: true},
			[]planned{{queue: 0, n: 3}, {queue: 1, n: 3, recovering: true}, {queue: 2, n: 3}}, 2},
		{"turn moves on",
			planInput{queues: planQueues(planAll, []bool{false, true, true}), free: 9, mayRecover: true, turn: 2},
			[]planned{{queue: 0, n: 3}, {queue: 1, n: 3}, {queue: 2, n: 3, recovering: true}}, 0},
		{"turn wraps round",
			planInput{queues: planQueues(planAll, []bool{false, true, false}), free: 9, mayRecover: true, turn: 2},
			[]planned{{queue: 0, n: 3}, {queue: 1, n: 3, recovering: true}, {queue: 2, n: 3}}, 2},
		{"no turn while a recovered task is held",
			planInput{queues: planQueues(planAll, planAll), free: 9, turn: 1},
			[]planned{{queue: 0, n: 3}, {queue: 1, n: 3}, {queue: 2, n: 3}}, 1},
		{"no turn without recovered tasks",
			planInput{queues: planQueues(planAll, planNone), free: 9, mayRecover: true, turn: 1},
			[]planned{{queue: 0, n: 3}, {queue: 1, n: 3}, {queue: 2, n: 3}}, 1},
		{"the queue whose turn it is is fetched though not ready",
			planInput{queues: planQueues(planNone, []bool{false, false, true}), free: 5, mayRecover: true},
			[]planned{{queue: 2, n: 5, recovering: true}}, 0},
		{"not ready and not its turn: not fetched",
			planInput{queues: planQueues([]bool{true, false, false}, []bool{false, true, true}), free: 4, mayRecover: true, turn: 2},
			[]planned{{queue: 0, n: 2}, {queue: 2, n: 2, recovering: true}}, 0},
		{"the queue whose turn it is asks for one task at least",
			planInput{queues: planQueues([]bool{true, true, false}, []bool{false, false, true}), free: 2, mayRecover: true},
			[]planned{{queue: 1, n: 1}, {queue: 2, n: 1, recovering: true}}, 0},
		{"one free slot goes to the queue whose turn it is",
			planInput{queues: planQueues(planAll, []bool{false, true, false}), free: 1, mayRecover: true},
			[]planned{{queue: 1, n: 1, recovering: true}}, 2},
		{"strict: the queue fetched takes a recovered task",
			planInput{queues: planQueues(planAll, planAll), free: 5, strict: true, mayRecover: true, turn: 2},
			[]planned{{queue: 0, n: 5, recovering: true}}, 2},
		{"strict: a higher queue without recovered tasks comes first",
			planInput{queues: planQueues(planAll, []bool{false, true, true}), free: 5, strict: true, mayRecover: true},
			[]planned{{queue: 0, n: 5}}, 0},
		{"strict: a queue with recovered tasks is fetched though not ready",
			planInput{queues: planQueues([]bool{false, false, true}, []bool{false, true, false}), free: 5, idle: 2, strict: true, mayRecover: true},
			[]planned{{queue: 1, n: 5, startNow: 2, recovering: true}}, 0},
		{"strict: no turn while a recovered task is held",
			planInput{queues: planQueues([]bool{false, false, true}, []bool{false, true, false}), free: 5, strict: true},
			[]planned{{queue: 2, n: 5}}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, turn := plan(c.in)
			if !reflect.DeepEqual(got, c.want) || turn != c.wantTurn {
				t.Fatalf("plan = %+v, turn %d; want %+v, turn %d", got, turn, c.want, c.wantTurn)
			}
		})
	}
}

// Rounds after rounds in which every queue is ready (as after each heartbeat)
// and the worker's one recovered task ends at once: every queue with recovered
// tasks waiting gets its turn, in rotation, whatever the order of the queues.
func TestPlanRotatesTheRecoveredTurn(t *testing.T) {
	t.Parallel()
	recovered := []bool{false, true, false, true, true}
	in := planInput{queues: planQueues(make([]bool, 5), recovered), free: 10, mayRecover: true}
	for i := range in.queues {
		in.queues[i].ready = true
	}
	var got []int
	for range 6 {
		var reqs []planned
		reqs, in.turn = plan(in)
		for _, r := range reqs {
			if r.recovering {
				got = append(got, r.queue)
			}
		}
	}
	if want := []int{1, 3, 4, 1, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Fatalf("recovered turns went to queues %v, want %v", got, want)
	}
}

// Invariants over random inputs: the free slots are all asked for and no
// more, no request is empty, at most one queue may take a recovered task and
// only one that has some while the worker holds planNone, no more tasks are marked
// started than runners are idle, and every queue fetched is ready or has its
// turn.
func TestPlanInvariants(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := 1 + r.IntN(5)
		in := planInput{free: r.IntN(12), idle: r.IntN(8) - 2, strict: r.IntN(4) == 0, rotate: r.IntN(100),
			mayRecover: r.IntN(2) == 0, turn: r.IntN(n)}
		for range n {
			in.queues = append(in.queues, planQueue{weight: 1 + r.IntN(4), ready: r.IntN(2) == 0, recovered: r.IntN(3) == 0})
		}
		reqs, turn := plan(in)
		sum, started, recovering := 0, 0, 0
		fetchable := false
		for _, q := range in.queues {
			fetchable = fetchable || q.ready || (in.mayRecover && q.recovered)
		}
		for _, p := range reqs {
			q := in.queues[p.queue]
			sum += p.n
			started += p.startNow
			if p.n < 1 || p.startNow > p.n {
				t.Fatalf("%+v: bad request %+v", in, p)
			}
			if p.recovering {
				recovering++
				if !in.mayRecover || !q.recovered {
					t.Fatalf("%+v: %+v may take a recovered task", in, p)
				}
			} else if !q.ready {
				t.Fatalf("%+v: %+v fetches a queue that is not ready", in, p)
			}
		}
		switch {
		case recovering > 1:
			t.Fatalf("%+v: %d queues may take a recovered task: %+v", in, recovering, reqs)
		case in.free > 0 && fetchable && sum != in.free, (in.free == 0 || !fetchable) && len(reqs) > 0:
			t.Fatalf("%+v: asks for %d tasks with %d free: %+v", in, sum, in.free, reqs)
		case started > max(in.idle, 0):
			t.Fatalf("%+v: %d marked started with %d idle: %+v", in, started, in.idle, reqs)
		case turn < 0 || turn >= n:
			t.Fatalf("%+v: turn %d", in, turn)
		}
		if !in.strict && in.free > 0 && in.mayRecover && recovering == 0 {
			for _, q := range in.queues {
				if q.recovered {
					t.Fatalf("%+v: no queue took the turn for a recovered task: %+v", in, reqs)
				}
			}
		}
	}
}

// planRound applies the plan to the worker: the queues asked are no longer
// ready, and each request has a token range of its own.
func TestPlanRoundMarksAskedQueues(t *testing.T) {
	t.Parallel()
	app, err := rediq.New(rediq.Config{RedisURL: "redis://127.0.0.1:1"}) // never dialled
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	w, err := New(app, Config{Queues: []string{"a", "b", "c"}, SkipDefaultQueue: true, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range w.queues {
		q.ready.Store(i != 2)
		q.recovered.Store(i == 2)
	}
	reqs, qs, turn := w.planRound(6, 0, 0)
	if len(reqs) != 3 || turn != 0 || !reqs[2].Recovering || reqs[0].Recovering || reqs[1].Recovering {
		t.Fatalf("planRound = %+v, turn %d", reqs, turn)
	}
	next := uint64(0)
	for i, r := range reqs {
		if qs[i].ready.Load() {
			t.Errorf("queue %s still ready after being asked", qs[i].Name)
		}
		if r.Queue != qs[i].Queue || r.TokenBase != next {
			t.Errorf("request %d: %+v, want queue %s from token %d", i, r, qs[i].Name, next)
		}
		next += uint64(r.N)
	}
}
