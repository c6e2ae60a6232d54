package broker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/testredis"
)

// The script benchmarks measure what each path costs the Redis thread: Redis's
// own CPU (INFO cpu, user + sys) over the timed part, per task, reported as
// redis-µs/task. That figure, not the client's ns/op, bounds how many tasks per
// second one Redis carries. On miniredis (no redis-server) there is no INFO
// cpu and only ns/op is reported. The payload is the standard workload's (61
// bytes of msgpack); ids are real task ids.

var benchBody = []byte("\x83\xa7user_id\xcd\x30\x39\xa6action\xb2send_welcome_email\xa2ts\xce\x65\x53\xf1\x00")

// redisCPU reads Redis's CPU seconds; ok is false where INFO has no cpu section.
func redisCPU(rdb *redis.Client) (float64, bool) {
	s, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0, false
	}
	var sum float64
	found := false
	for _, line := range strings.Split(s, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				sum += f
				found = true
			}
		}
	}
	return sum, found
}

// cpuMeter adds up Redis CPU over the timed parts of a benchmark.
type cpuMeter struct {
	b     *testing.B
	rdb   *redis.Client
	spent float64
	from  float64
	ok    bool
}

func newCPUMeter(b *testing.B, rdb *redis.Client) *cpuMeter {
	_, ok := redisCPU(rdb)
	return &cpuMeter{b: b, rdb: rdb, ok: ok}
}

func (m *cpuMeter) start() {
	m.from, _ = redisCPU(m.rdb)
	m.b.StartTimer()
}

func (m *cpuMeter) stop() {
	m.b.StopTimer()
	now, _ := redisCPU(m.rdb)
	m.spent += now - m.from
}

// report gives the Redis CPU per task of the timed parts.
func (m *cpuMeter) report(tasks int) {
	if m.ok && tasks > 0 {
		m.b.ReportMetric(m.spent*1e6/float64(tasks), "redis-µs/task")
	}
	m.b.ReportMetric(float64(m.b.Elapsed().Nanoseconds())/float64(tasks), "ns/task")
}

func benchSetup(b testing.TB) (*broker.Broker, *broker.Queue, *redis.Client) {
	rdb := testredis.Client(b)
	br := broker.New(rdb, testredis.Namespace(b))
	b.Cleanup(func() { _, _ = br.DeleteNamespace(context.Background()) })
	return br, br.Queue("bench"), rdb
}

// benchFlow is the flow of the benchmark's tasks: their type, as rediq's
// producers send it.
var benchFlow = "bench.task"

func benchMessages(n int) []broker.Message {
	msgs := make([]broker.Message, n)
	now := time.Now()
	for i := range msgs {
		msgs[i] = broker.Message{ID: codec.NewID(now), Slot: 2048, Flow: benchFlow, Body: benchBody}
	}
	return msgs
}

// fill enqueues n pending tasks, 1,000 per call, outside the timed part.
func fill(b *testing.B, br *broker.Broker, q *broker.Queue, n int) {
	msgs := benchMessages(n)
	for from := 0; from < n; from += 1000 {
		if _, err := br.Enqueue(context.Background(), q, msgs[from:min(from+1000, n)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScriptEnqueueOne: single enqueues from 16 goroutines, as the
// standard workload's producers (one enqueue.lua call per task).
func BenchmarkScriptEnqueueOne(b *testing.B) {
	br, q, rdb := benchSetup(b)
	m := newCPUMeter(b, rdb)
	ids := make([]string, b.N)
	now := time.Now()
	for i := range ids {
		ids[i] = codec.NewID(now)
	}
	var next atomic.Int64
	b.SetParallelism(8) // 16 goroutines on 2 CPUs
	b.StopTimer()
	m.start()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)-1]
			if _, err := br.Enqueue1(context.Background(), q, broker.Message{ID: id, Slot: 2048, Flow: benchFlow, Body: benchBody}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	m.stop()
	m.report(b.N)
}

// BenchmarkScriptEnqueueMany: EnqueueMany's path, 1,000 tasks per call.
func BenchmarkScriptEnqueueMany(b *testing.B) {
	br, q, rdb := benchSetup(b)
	m := newCPUMeter(b, rdb)
	b.StopTimer()
	for range b.N {
		msgs := benchMessages(1000)
		m.start()
		if _, err := br.Enqueue(context.Background(), q, msgs); err != nil {
			b.Fatal(err)
		}
		m.stop()
	}
	m.report(b.N * 1000)
}

// cycle fills a queue with n tasks and runs them through as a worker at
// concurrency 50 does: fetch 50, settle the 50 fetched before them with
// outcome o, so that about 100 leases stand at any time. fm times the fetches,
// sm the settles (either may be nil).
func cycle(b *testing.B, br *broker.Broker, q *broker.Queue, session string, base *uint64, n int, o broker.Outcome, fm, sm *cpuMeter) {
	fill(b, br, q, n)
	var held []broker.Leased
	for done := 0; done < n; {
		if fm != nil {
			fm.start()
		}
		got, err := br.Fetch(context.Background(), session, time.Minute,
			[]broker.FetchRequest{{Queue: q, N: 50, TokenBase: *base, StartNow: 50}})
		if fm != nil {
			fm.stop()
		}
		if err != nil || got[0].Err != nil {
			b.Fatal(err, got[0].Err)
		}
		*base += uint64(len(got[0].Tasks))
		if len(held) > 0 || len(got[0].Tasks) == 0 {
			settleAll(b, br, q, session, held, o, sm)
			done += len(held)
		}
		held = got[0].Tasks
	}
}

func benchSession(b *testing.B, br *broker.Broker, q *broker.Queue) string {
	session := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if _, err := br.Heartbeat(context.Background(), session, time.Minute, true, []*broker.Queue{q}); err != nil {
		b.Fatal(err)
	}
	return session
}

const roundTasks = 5000

// BenchmarkScriptFetch: fetch.lua leasing pending tasks, 50 per call, with
// about 100 leases standing.
func BenchmarkScriptFetch(b *testing.B) { benchCycle(b, broker.Ack, true, nil, "") }

// BenchmarkScriptFetchLimited: the same, the tasks' type under a rate and a
// concurrency limit that never bind (1,000,000/s, 1,000 at once): what the
// limits' bookkeeping costs the limited type.
func BenchmarkScriptFetchLimited(b *testing.B) {
	benchCycle(b, broker.Ack, true, &broker.Limit{Rate: 1_000_000, Per: time.Second, Concurrency: 1000}, benchFlow)
}

// BenchmarkScriptFetchBesideLimited: the same unlimited tasks while another
// type of the queue has a limit: what a limit costs the types without one.
func BenchmarkScriptFetchBesideLimited(b *testing.B) {
	benchCycle(b, broker.Ack, true, &broker.Limit{Rate: 1_000_000, Per: time.Second, Concurrency: 1000, Code: true}, "other.task")
}

// BenchmarkScriptSettleAckLimited: settle.lua acknowledging tasks that hold
// a concurrency slot (freed with each ack).
func BenchmarkScriptSettleAckLimited(b *testing.B) {
	benchCycle(b, broker.Ack, false, &broker.Limit{Concurrency: 1000}, benchFlow)
}

// benchCycle runs cycles of roundTasks tasks settled with outcome o, timing
// the fetches (timeFetch) or the settles; with l, the queue's type typ has
// that limit first.
func benchCycle(b *testing.B, o broker.Outcome, timeFetch bool, l *broker.Limit, typ string) {
	br, q, rdb := benchSetup(b)
	if l != nil {
		if _, err := br.SetLimit(context.Background(), q, typ, *l); err != nil {
			b.Fatal(err)
		}
	}
	session := benchSession(b, br, q)
	m := newCPUMeter(b, rdb)
	fm, sm := m, (*cpuMeter)(nil)
	if !timeFetch {
		fm, sm = nil, m
	}
	b.StopTimer()
	var base uint64
	for range b.N {
		cycle(b, br, q, session, &base, roundTasks, o, fm, sm)
		if o == broker.Retry { // the retried tasks' records and schedule go
			if err := rdb.Del(context.Background(), q.Scheduled, q.Records).Err(); err != nil {
				b.Fatal(err)
			}
		}
	}
	m.report(b.N * roundTasks)
}

// settleAll settles the leased tasks 50 per settle.lua call (the settler's
// coalescing at concurrency 50).
func settleAll(b *testing.B, br *broker.Broker, q *broker.Queue, session string, ts []broker.Leased, o broker.Outcome, m *cpuMeter) {
	ss := make([]broker.Settlement, len(ts))
	for i, t := range ts {
		ss[i] = broker.Settlement{Queue: q, Session: session, Token: t.Token, ID: t.ID, Outcome: o}
		if o == broker.Retry {
			ss[i].Body, ss[i].Delay = benchBody, time.Hour
		}
	}
	if m != nil {
		m.start()
	}
	for from := 0; from < len(ss); from += 50 {
		held, err := br.Settle(context.Background(), keep, ss[from:min(from+50, len(ss))])
		if err != nil {
			b.Fatal(err)
		}
		for _, h := range held {
			if !h {
				b.Fatal("a lease was not held")
			}
		}
	}
	if m != nil {
		m.stop()
	}
}

// BenchmarkScriptSettleAck: settle.lua acknowledging successes, 50 per call.
func BenchmarkScriptSettleAck(b *testing.B) { benchCycle(b, broker.Ack, false, nil, "") }

// BenchmarkScriptSettleRetry: settle.lua sending failures back to run again
// (the record rewritten, indexed in scheduled), 50 per call.
func BenchmarkScriptSettleRetry(b *testing.B) { benchCycle(b, broker.Retry, false, nil, "") }
