package broker

import (
	"context"
	"errors"
	"runtime"
	"sync"
)

// maxInflight is how many enqueue round trips one queue has in flight at once
// from this process. Callers that find them all busy wait and go in the next
// batch, so under concurrency single Enqueue calls cost a fraction of a round
// trip and a fraction of a script call each, while a lone caller still sends at
// once (group commit).
const maxInflight = 4

// maxCombined bounds one combined call, like the chunks of Enqueue.
const maxCombined = 1000

// errLead tells a waiting caller that it now sends the next batch.
var errLead = errors.New("lead")

type enqueueReq struct {
	slot int
	body []byte
	done chan error // buffered: the result, or errLead
}

var reqPool = sync.Pool{New: func() any { return &enqueueReq{done: make(chan error, 1)} }}

// combiner batches the single enqueues of one queue.
type combiner struct {
	mu       sync.Mutex
	waiting  []*enqueueReq
	inflight int
}

// Enqueue1 adds one message without a delay to pending. Concurrent calls for the
// same queue are combined into one script call. If ctx ends while the call waits
// for its batch, it returns ctx.Err() and the message may still be enqueued —
// the same ambiguity as a network timeout.
func (b *Broker) Enqueue1(ctx context.Context, q *Queue, slot int, body []byte) error {
	if !q.indexed.Load() {
		return b.Enqueue(ctx, q, []Message{{Slot: slot, Body: body}})
	}
	r := reqPool.Get().(*enqueueReq)
	r.slot, r.body = slot, body
	c := &q.combiner
	c.mu.Lock()
	if c.inflight < maxInflight {
		c.inflight++
		c.mu.Unlock()
		b.lead(ctx, q, []*enqueueReq{r})
	} else {
		c.waiting = append(c.waiting, r)
		c.mu.Unlock()
	}
	for {
		select {
		case err := <-r.done:
			if err == errLead { // r was handed the lane: its batch starts with r
				b.lead(ctx, q, []*enqueueReq{r})
				continue
			}
			r.body = nil
			reqPool.Put(r)
			return err
		case <-ctx.Done():
			// r stays with its batch, which still answers on r.done (buffered).
			return ctx.Err()
		}
	}
}

// maxRounds bounds how many batches one caller sends before it hands its lane
// to a waiting caller: sending on while others wait saves waking a goroutine per
// batch, and the bound keeps the leader's own call from waiting long.
const maxRounds = 8

// lead sends batch plus everything waiting, answers each caller, and goes on
// while callers wait, up to maxRounds batches; then it hands the lane to the next
// waiter or gives it up.
func (b *Broker) lead(ctx context.Context, q *Queue, batch []*enqueueReq) {
	c := &q.combiner
	// One caller's cancellation must not fail the others' messages; go-redis's
	// own timeouts bound the call.
	ctx = context.WithoutCancel(ctx)
	args := make([]any, 0, 64)
	for round := 0; ; round++ {
		// Let the callers just answered (runnable, not yet running) come back
		// with their next message before the batch is cut: on a busy process
		// this multiplies the batch size; on an idle one it costs nothing.
		runtime.Gosched()
		c.mu.Lock()
		take := min(len(c.waiting), maxCombined-len(batch))
		batch = append(batch, c.waiting[:take]...)
		c.waiting = c.waiting[take:]
		c.mu.Unlock()

		args = append(args[:0], q.Channel)
		for _, r := range batch {
			args = append(args, r.slot, r.body)
		}
		err := b.run(ctx, enqueueScript, []string{q.Pending, q.Seq}, args...).Err()
		for _, r := range batch {
			r.done <- err
		}
		batch = batch[:0]

		c.mu.Lock()
		switch {
		case len(c.waiting) == 0:
			c.inflight--
			c.mu.Unlock()
			return
		case round+1 < maxRounds:
			c.mu.Unlock()
			continue
		}
		next := c.waiting[0]
		c.waiting = c.waiting[1:]
		c.mu.Unlock()
		next.done <- errLead // it takes over this lane
		return
	}
}
