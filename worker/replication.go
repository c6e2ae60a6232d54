package worker

import (
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
)

// replicationWarnEvery spaces the warnings of writes the replicas did not
// confirm: with a replica down, every round trip would say so.
const replicationWarnEvery = 10 * time.Second

// replicationLog reports, at most every replicationWarnEvery, the fetches and
// settlements that Redis applied but fewer replicas than asked confirmed.
type replicationLog struct {
	mu     sync.Mutex
	last   time.Time
	missed int // since the last warning
}

// unconfirmed reports whether err says that a fetch or settlement was applied
// on the master and not confirmed by its replicas (Config.WaitReplicas): the
// worker goes on with it as applied — sending it again would not make the
// first write reach the replicas sooner, and a failover that undoes it runs
// its tasks again, never loses them — and the warning says so.
func (w *Worker) unconfirmed(what string, err error) bool {
	if !errors.Is(err, broker.ErrNotReplicated) {
		return false
	}
	l := &w.replLog
	l.mu.Lock()
	l.missed++
	now := time.Now()
	if now.Sub(l.last) < replicationWarnEvery {
		l.mu.Unlock()
		return true
	}
	n := l.missed
	l.last, l.missed = now, 0
	l.mu.Unlock()
	w.log.Warn("the replicas did not confirm the worker's writes in time; a failover now may run those tasks again",
		zap.String("write", what), zap.Int("unconfirmed_round_trips", n), zap.Error(err))
	return true
}
