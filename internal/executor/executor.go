// Package executor is the bounded goroutine pool behind rediq.RunInExecutor: it
// keeps blocking or CPU-heavy work from a worker's handlers to a fixed number of
// goroutines, however high the handler concurrency.
package executor

import (
	"context"
	"sync"
)

// Pool runs functions on at most size goroutines.
type Pool struct {
	work chan func()
	wg   sync.WaitGroup
	once sync.Once
}

// New starts a pool of size goroutines (at least one).
func New(size int) *Pool {
	p := &Pool{work: make(chan func())}
	for range max(size, 1) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for fn := range p.work {
				fn()
			}
		}()
	}
	return p
}

// Run runs fn on the pool and waits for it. If ctx ends first, Run returns
// ctx.Err(); fn, if it had started, finishes on the pool in the background.
func (p *Pool) Run(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	task := func() {
		defer close(done)
		fn()
	}
	select {
	case p.work <- task:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the pool once the functions already running return, and waits.
// Run must not be called after Close.
func (p *Pool) Close() {
	p.once.Do(func() { close(p.work) })
	p.wg.Wait()
}
