package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replication asks Redis to confirm the broker's task writes (enqueues,
// fetches, settlements) on replicas: each such round trip ends with WAIT
// Replicas Timeout on the connection that made the write. Redis replicates
// asynchronously, so a write it has acknowledged can still be lost when a
// replica is promoted before it copied it (a Sentinel or Cluster failover);
// one that Replicas replicas have acknowledged survives the promotion of any
// of them.
type Replication struct {
	Replicas int           // 0: no WAIT
	Timeout  time.Duration // how long WAIT waits for them; must be > 0 with Replicas
}

// ErrNotReplicated is matched by a *ReplicationError.
var ErrNotReplicated = errors.New("not replicated")

// ReplicationError says that a write was done on the master but fewer
// replicas than asked acknowledged it within the timeout: it stands unless
// the master fails before they copy it.
type ReplicationError struct {
	Acked, Want int
	Timeout     time.Duration
}

func (e *ReplicationError) Error() string {
	return fmt.Sprintf("%s: %d of %d replicas acknowledged the write within %s", ErrNotReplicated, e.Acked, e.Want, e.Timeout)
}

// Is makes errors.Is(err, ErrNotReplicated) true.
func (e *ReplicationError) Is(target error) bool { return target == ErrNotReplicated }

// SetReplication makes the broker's task writes wait for replicas. Call it
// before the broker is used.
func (b *Broker) SetReplication(r Replication) { b.repl = r }

// Replication is what SetReplication set.
func (b *Broker) Replication() Replication { return b.repl }

// WithReplication returns a broker on b's client and namespace whose task
// writes wait as r says (b itself if it already does).
func (b *Broker) WithReplication(r Replication) *Broker {
	if r == b.repl {
		return b
	}
	n := New(b.rdb, b.ns)
	n.repl = r
	return n
}

// node is a master that a pipeline's scripts go to when writes wait for
// replicas: its client, the pipeline of the scripts sent to it, ended by WAIT.
type node struct {
	client redis.Cmdable
	pipe   redis.Pipeliner
	calls  []*call
	wait   *redis.Cmd
	err    error
}

// nodeFor returns the node that owns key. WAIT counts the replicas that copied
// what its own connection wrote, so it must follow the script on the same
// connection. On one server (or a Sentinel's master) that is the pipeline's
// pipeline, ended by WAIT. A Cluster pipeline would send a keyless WAIT to a
// random master (and go-redis refuses to pipeline a command whose policy is
// "all shards", as WAIT's is): there each master that owns one of the
// scripts' slots gets a pipeline of its own on its own client.
func (t *pipeline) nodeFor(ctx context.Context, key string) (*node, error) {
	cc, ok := t.b.rdb.(*redis.ClusterClient)
	if !ok {
		if len(t.nodes) == 0 {
			t.nodes = append(t.nodes, &node{client: t.b.rdb, pipe: t.pipe})
		}
		return t.nodes[0], nil
	}
	c, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	for _, n := range t.nodes {
		if n.client == c {
			return n, nil
		}
	}
	n := &node{client: c, pipe: c.Pipeline()}
	t.nodes = append(t.nodes, n)
	return n, nil
}

// execReplicated runs a pipeline whose scripts wait for replicas: the plain
// commands, through the client (they do not wait), then each node's pipeline
// with its WAIT. Errors come first; then, when every command ran, a
// *ReplicationError if a master heard from fewer replicas than asked.
func (t *pipeline) execReplicated(ctx context.Context) error {
	if t.err != nil {
		return t.err
	}
	r := t.b.repl
	for _, n := range t.nodes {
		n.wait = n.pipe.Do(ctx, "WAIT", r.Replicas, r.Timeout.Milliseconds())
	}
	if _, cluster := t.b.rdb.(*redis.ClusterClient); cluster && t.pipe.Len() > 0 {
		if err := t.execPipe(ctx, t.pipe, nil, t.b.rdb); err != nil {
			return err
		}
	}
	if len(t.nodes) == 1 {
		t.nodes[0].err = t.execNode(ctx, t.nodes[0])
	} else { // several masters of a Cluster: at once, as go-redis sends a pipeline
		var wg sync.WaitGroup
		for _, n := range t.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.err = t.execNode(ctx, n)
			}()
		}
		wg.Wait()
	}
	for _, n := range t.nodes {
		if n.err != nil {
			if cc, ok := t.b.rdb.(*redis.ClusterClient); ok && movedSlot(n.err) {
				// The slot moved: the next attempt finds its new master.
				cc.ReloadState(ctx)
			}
			return n.err
		}
	}
	acked := -1
	for _, n := range t.nodes {
		v, err := n.wait.Int()
		if err != nil {
			return fmt.Errorf("wait for replicas: %w", err)
		}
		if acked < 0 || v < acked {
			acked = v
		}
	}
	if acked >= 0 && acked < r.Replicas {
		return &ReplicationError{Acked: acked, Want: r.Replicas, Timeout: r.Timeout}
	}
	return nil
}

// execNode runs one node's pipeline. Scripts that the node did not know
// (NOSCRIPT: nothing ran) go again with their source, in a pipeline of their
// own ended by a WAIT of its own: the first WAIT did not cover them.
func (t *pipeline) execNode(ctx context.Context, n *node) error {
	cmds, err := n.pipe.Exec(ctx)
	var again []*call
	for _, c := range n.calls {
		if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			again = append(again, c)
		}
	}
	if len(again) > 0 {
		p := n.client.Pipeline()
		evals := make([]*redis.Cmd, len(again))
		for i, c := range again {
			evals[i] = c.script.Eval(ctx, p, c.keys, c.args...)
		}
		r := t.b.repl
		n.wait = p.Do(ctx, "WAIT", r.Replicas, r.Timeout.Milliseconds())
		_, _ = p.Exec(ctx)
		for i, c := range again {
			c.cmd.SetVal(evals[i].Val())
			c.cmd.SetErr(evals[i].Err())
		}
		if werr := n.wait.Err(); werr != nil {
			return werr
		}
	}
	return firstError(err, cmds)
}

// movedSlot reports a Cluster redirection: the command did not run.
func movedSlot(err error) bool {
	return redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")
}

// CheckReplication is r.Check against the broker's client.
func (b *Broker) CheckReplication(r Replication) error { return r.Check(b.rdb) }

// Check reports why r cannot work on rdb, if it cannot: WAIT goes in a
// pipeline, whose replies go-redis reads within the client's read timeout,
// so a longer WAIT would end as a timeout (an outcome unknown) instead of a
// count of replicas.
func (r Replication) Check(rdb redis.UniversalClient) error {
	if r.Replicas < 0 || r.Timeout < 0 {
		return fmt.Errorf("wait for %d replicas within %s: negative", r.Replicas, r.Timeout)
	}
	if r.Replicas == 0 {
		return nil
	}
	if r.Timeout < time.Millisecond {
		return fmt.Errorf("wait for %d replicas within %s: the timeout must be at least 1ms (WAIT 0 would wait forever)", r.Replicas, r.Timeout)
	}
	var rt time.Duration
	switch c := rdb.(type) {
	case *redis.Client:
		rt = c.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = c.Options().ReadTimeout
	}
	if rt > 0 && r.Timeout >= rt {
		return fmt.Errorf("wait for %d replicas within %s: the timeout must be shorter than the client's read timeout, %s (read_timeout= in the URL)",
			r.Replicas, r.Timeout, rt)
	}
	return nil
}
