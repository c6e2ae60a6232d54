package worker_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// After a Sentinel failover the worker's wake-up subscription stays
// on the old master (go-redis moves its pooled connections, not its pub/sub
// one), and the old master, still a master until Sentinel demotes it some 10s
// later, hears none of the new master's PUBLISHes. Idle workers then wait for
// the heartbeat's safety net instead of waking at once. The worker probes its
// subscription after each heartbeat and subscribes again when a probe does not
// come back: a few heartbeats after the failover, wake-ups flow again.
//
// Each task is enqueued once the previous one started, so that the queue is
// empty and the enqueue publishes a wake-up. A deaf subscription leaves each
// such task to the next heartbeat, which then comes about a heartbeat interval
// (300ms) after the previous task started: every delay is near 300ms. A live
// one starts it in milliseconds.
func TestSentinelFailoverKeepsWakeUpsFlowing(t *testing.T) {
	t.Parallel()
	const (
		masterName = "rediq-failover"
		leaseTTL   = 900 * time.Millisecond // heartbeat and probe every 300ms
		// settle is how long after the failover the worker gets to find its
		// subscription deaf (a probe sent on the new master is missed at the
		// next heartbeat) and subscribe again: 2 heartbeat intervals and room.
		settle = 1500 * time.Millisecond
		// fast is a wake-up through a live subscription, with room for -race
		// and a loaded machine; the heartbeat's safety net is 300ms.
		fast     = 100 * time.Millisecond
		stall    = 2 * time.Second
		measured = 8
	)
	ctx := context.Background()

	pair := startSentinelPair(t, masterName)
	replica, promoted := pair.replica, pair.promoted
	url := pair.url
	ns := testredis.Namespace(t)
	newApp := func() *rediq.App {
		app, err := rediq.New(rediq.Config{RedisURL: url, Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close() })
		return app
	}
	app, producerApp := newApp(), newApp()
	type start struct {
		id string
		at time.Time
	}
	starts := newRecorder[start]()
	rediq.Register(app, "stamp", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		starts.add(start{id: string(info.ID), at: time.Now()})
		return 0, nil
	})
	producer := rediq.Register(producerApp, "stamp", func(context.Context, int) (int, error) { return 0, nil })
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core(), core))
	startSentinelWorker(t, app, worker.Config{Name: "w-sentinel", LeaseTTL: leaseTTL, Logger: log}, producerApp)

	// run enqueues a task, retrying while the failover settles, and returns
	// how long it took from its enqueue to its start.
	run := func() time.Duration {
		t.Helper()
		var id rediq.TaskID
		var sent time.Time
		deadline := time.Now().Add(5 * time.Second)
		for {
			var err error
			sent = time.Now()
			if id, err = producer.Enqueue(ctx, 0); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("enqueue: %v", err)
			}
			t.Logf("enqueue failed, trying again: %v", err)
			time.Sleep(20 * time.Millisecond)
		}
		timeout := time.After(5 * time.Second)
		for {
			starts.mu.Lock()
			i := slices.IndexFunc(starts.vals, func(s start) bool { return s.id == string(id) })
			var at time.Time
			if i >= 0 {
				at = starts.vals[i].at
			}
			ch := starts.change
			starts.mu.Unlock()
			if i >= 0 {
				return at.Sub(sent)
			}
			select {
			case <-ch:
			case <-timeout:
				t.Fatalf("task %s, enqueued %s ago, did not run", id, time.Since(sent).Round(time.Millisecond))
			}
		}
	}

	t.Logf("before the failover: a task started %s after its enqueue", run())

	failoverAt := time.Now()
	pair.failover()
	settled := time.Now()
	t.Logf("failover done in %s", settled.Sub(failoverAt).Round(time.Millisecond))

	// The producer hears of the new master from the Sentinel's +switch-master;
	// until then a write could still reach the old master, which nobody reads
	// any more. Once one command reached the new master, all do.
	_, replicaPort, _ := net.SplitHostPort(replica.Addr())
	testredis.WaitFor(t, 5*time.Second, "the producer to use the new master", func() bool {
		info, err := producerApp.Redis().Info(ctx, "server").Result()
		return err == nil && strings.Contains(info, "tcp_port:"+replicaPort+"\r\n")
	})

	if d := run(); d > stall {
		t.Errorf("right after the failover a task started %s after its enqueue, want < %s", d, stall)
	} else {
		t.Logf("right after the failover: a task started %s after its enqueue", d)
	}

	// Give the worker its heartbeats to notice; a deliberate wait, not a guess
	// that something happened.
	<-time.After(time.Until(settled.Add(settle)))
	var delays []time.Duration
	for range measured {
		delays = append(delays, run())
	}
	slices.Sort(delays)
	t.Logf("%s after the failover, %d tasks started after (sorted) %v", settle, measured, delays)
	if delays[len(delays)-1] > stall {
		t.Errorf("a task started %s after its enqueue, want < %s", delays[len(delays)-1], stall)
	}
	// Half, not all: one slow wake-up on a loaded machine is no stale
	// subscription, which makes every one of them wait for a heartbeat.
	if median := delays[len(delays)/2]; median >= fast {
		wake := broker.New(promoted, ns).Queue("default").Channel
		subs, err := promoted.PubSubNumSub(ctx, wake).Result()
		t.Errorf("%s after the failover the median task started %s after its enqueue, want < %s: "+
			"wake-ups wait for the heartbeat (subscribers of %s on the new master: %v, %v)",
			settle, median, fast, wake, subs[wake], err)
	}
	n := logs.FilterMessage("subscribed again to the wake-up channels").Len()
	t.Logf("the worker subscribed again %d times", n)
	if n == 0 {
		t.Fatal("the worker never subscribed again: the failover did not exercise the fix")
	}
}

// startSentinelWorker runs a worker of app until t ends. Its stop is bounded:
// if Run has not returned 5s after its context ends, app and others are closed, which
// ends whatever waits on Redis, so that the test ends (and reports it) in
// seconds instead of after the worker's 30s shutdown timeout.
func startSentinelWorker(t *testing.T, app *rediq.App, cfg worker.Config, others ...*rediq.App) {
	t.Helper()
	w, err := worker.New(app, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("worker Run: %v", err)
			}
			return
		case <-time.After(5 * time.Second):
		}
		t.Errorf("worker did not stop within 5s; closing its Redis clients")
		for _, a := range append(others, app) {
			a.Close()
		}
		select {
		case <-errc:
		case <-time.After(10 * time.Second):
			t.Errorf("worker did not stop within 10s of its Redis clients closing")
		}
	})
}

// sentinelPair is a master, its replica and a Sentinel that watches them.
type sentinelPair struct {
	name     string
	master   *testredis.Server
	replica  *testredis.Server
	promoted *redis.Client // a client of the replica
	sentinel *redis.SentinelClient
	url      string // redis+sentinel:// for rediq.Config.RedisURL
	t        *testing.T
}

// startSentinelPair starts a sentinelPair under the master name name, with
// the replica in sync and known to the Sentinel.
func startSentinelPair(t *testing.T, name string) *sentinelPair {
	t.Helper()
	ctx := context.Background()
	p := &sentinelPair{name: name, t: t}
	// No diskless-sync delay (5s by default): the replica is in sync at once.
	p.master = testredis.StartServer(t, testredis.WithArgs("--repl-diskless-sync-delay", "0"))
	_, masterPort, _ := net.SplitHostPort(p.master.Addr())
	// The replica, once promoted, syncs the demoted master at once too.
	p.replica = testredis.StartServer(t, testredis.WithArgs("--replicaof", "127.0.0.1", masterPort, "--repl-diskless-sync-delay", "0"))
	p.promoted = testredis.ClientFor(t, p.replica.URL())
	p.waitInfo(p.promoted, "master_link_status:up", 10*time.Second, "the replica to sync with the master")
	// Started after the replica synced, the Sentinel finds it in the master's
	// first INFO instead of one 10s later.
	sentinelAddr := testredis.StartSentinel(t, name, p.master.Addr())
	p.sentinel = redis.NewSentinelClient(&redis.Options{Addr: sentinelAddr})
	t.Cleanup(func() { p.sentinel.Close() })
	testredis.WaitFor(t, 15*time.Second, "the Sentinel to know the replica", func() bool {
		replicas, err := p.sentinel.Replicas(ctx, name).Result()
		if err != nil {
			return false
		}
		for _, r := range replicas {
			if net.JoinHostPort(r["ip"], r["port"]) == p.replica.Addr() && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true
			}
		}
		return false
	})
	p.url = "redis+sentinel://" + sentinelAddr + "?master_name=" + name
	return p
}

// waitInfo waits until rdb's INFO replication has the line want.
func (p *sentinelPair) waitInfo(rdb *redis.Client, want string, timeout time.Duration, what string) {
	p.t.Helper()
	testredis.WaitFor(p.t, timeout, what, func() bool {
		info, err := rdb.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, want+"\r\n")
	})
}

// failover has the Sentinel promote the replica, and waits until it names it
// as the master and the replica says it is.
func (p *sentinelPair) failover() {
	t := p.t
	t.Helper()
	ctx := context.Background()
	testredis.WaitFor(t, 10*time.Second, "SENTINEL FAILOVER to be accepted", func() bool {
		// NOGOODSLAVE until the Sentinel has the replica's INFO.
		err := p.sentinel.Failover(ctx, p.name).Err()
		if err != nil {
			t.Logf("SENTINEL FAILOVER: %v", err)
			time.Sleep(50 * time.Millisecond)
		}
		return err == nil
	})
	testredis.WaitFor(t, 15*time.Second, "the Sentinel to name the replica as master", func() bool {
		addr, err := p.sentinel.GetMasterAddrByName(ctx, p.name).Result()
		return err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == p.replica.Addr()
	})
	p.waitInfo(p.promoted, "role:master", 5*time.Second, "the replica to be master")
}

// Redis replicates asynchronously. An enqueue that the
// master acknowledged just before a Sentinel failover, or that reached the
// old master in the second after it (before the producer heard of the
// switch, and before the Sentinel demoted the old master, which then drops
// its data), is missing on the promoted replica: its Enqueue succeeded and the
// task never runs. With WaitReplicas an Enqueue succeeds only once a replica
// has the task; on the old master, cut off from its replica, it fails with
// ErrNotReplicated instead. The worker has a backlog, as in the report, so
// that the tasks at risk wait in Redis when the failover comes.
func TestSentinelFailoverUnderLoadLosesNoAcknowledgedTask(t *testing.T) {
	t.Parallel()
	testFailoverUnderLoad(t, 1)
}

func testFailoverUnderLoad(t *testing.T, waitReplicas int) {
	const (
		masterName = "rediq-failover-load"
		producers  = 2
		every      = 4 * time.Millisecond  // per producer: up to 500 enqueues/s in all
		handler    = 10 * time.Millisecond // 2 at a time: at most 200 tasks/s, a backlog
		before     = 100                   // tasks acknowledged before the failover
		after      = 2 * time.Second       // load after the Sentinel names the new master
		drain      = 30 * time.Second
	)
	pair := startSentinelPair(t, masterName)
	ns := testredis.Namespace(t)
	newApp := func(cfg rediq.Config) *rediq.App {
		cfg.RedisURL, cfg.Namespace = pair.url, ns
		app, err := rediq.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close() })
		return app
	}
	app := newApp(rediq.Config{WaitReplicas: waitReplicas})
	producerApp := newApp(rediq.Config{WaitReplicas: waitReplicas})

	var mu sync.Mutex
	runs := map[string]int{}
	changed := make(chan struct{}, 1)
	rediq.Register(app, "load", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		time.Sleep(handler)
		mu.Lock()
		runs[string(info.ID)]++
		mu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
		return 0, nil
	})
	producer := rediq.Register(producerApp, "load", func(context.Context, int) (int, error) { return 0, nil })
	startSentinelWorker(t, app, worker.Config{Name: "w-load", Concurrency: 2, LeaseTTL: time.Second,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}, producerApp)

	var (
		acked                        []string
		notReplicated, failed, tries atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				id, err := producer.Enqueue(ctx, 0)
				cancel()
				tries.Add(1)
				switch {
				case err == nil:
					mu.Lock()
					acked = append(acked, string(id))
					mu.Unlock()
				case errors.Is(err, rediq.ErrNotReplicated):
					notReplicated.Add(1)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	// Load before the failover: until some tasks are acknowledged (the first
	// calls also dial the Sentinel and the master).
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		early := len(acked)
		mu.Unlock()
		if early >= before {
			break
		}
		if time.Now().After(deadline) {
			info := func(rdb *redis.Client) string { return rdb.Info(context.Background(), "replication").Val() }
			close(stop)
			wg.Wait()
			t.Fatalf("%d enqueues succeeded in 10s before the failover, want %d (%d not replicated, %d failed); master:\n%s\nreplica:\n%s",
				early, before, notReplicated.Load(), failed.Load(), info(testredis.ClientFor(t, pair.master.URL())), info(pair.promoted))
		}
		time.Sleep(10 * time.Millisecond)
	}
	pair.failover()
	time.Sleep(after) // and after it, while the clients switch
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("%d enqueues: %d succeeded, %d not replicated, %d failed otherwise; %d tasks ran so far",
		tries.Load(), len(acked), notReplicated.Load(), failed.Load(), len(runs))
	mu.Unlock()

	missing := func() (lost []string, twice int) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range acked {
			if runs[id] == 0 {
				lost = append(lost, id)
			}
		}
		for _, n := range runs {
			if n > 1 {
				twice++
			}
		}
		return lost, twice
	}
	drained := time.After(drain)
	for {
		lost, twice := missing()
		if len(lost) == 0 {
			t.Logf("every acknowledged task ran; %d ran more than once", twice)
			return
		}
		select {
		case <-changed:
			continue
		case <-time.After(time.Second): // nothing ran for a second: look in Redis
		case <-drained:
		}
		lost, twice = missing()
		if len(lost) == 0 {
			continue
		}
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		var gone int
		for _, id := range lost {
			if _, err := producerApp.GetTask(context.Background(), rediq.TaskID(id)); errors.Is(err, rediq.ErrTaskNotFound) {
				gone++
			}
		}
		if gone == 0 {
			select {
			case <-drained:
			default:
				continue // they are in Redis, waiting for the worker
			}
		}
		t.Fatalf("%d of %d tasks whose Enqueue succeeded did not run (%d of them are not in Redis); %d ran more than once; first: %s",
			len(lost), n, gone, twice, lost[0])
	}
}
