package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	pauseScript     = load("pause", "pause_id")
	resumeScript    = load("resume", "pause_id")
	pauseAckScript  = load("pause_ack")
	pauseWaitScript = load("pause_wait")
)

// Pause pauses q: no worker starts its tasks until Resume. It answers the
// pause's id (kept if q was already paused); workers acknowledge that id once
// they start none of q's tasks (PauseUnacked).
func (b *Broker) Pause(ctx context.Context, q *Queue) (string, error) {
	id, err := b.run(ctx, pauseScript, []string{q.Paused, q.pauseAcks, q.pauseVer}, q.Channel).Text()
	if err != nil {
		return "", fmt.Errorf("pause %q: %w", q.Name, err)
	}
	return id, nil
}

// Resume lets q's tasks start again; wasPaused says whether q was paused.
func (b *Broker) Resume(ctx context.Context, q *Queue) (wasPaused bool, err error) {
	n, err := b.run(ctx, resumeScript, []string{q.Paused, q.pauseAcks, q.pauseVer}, q.Channel).Int()
	if err != nil {
		return false, fmt.Errorf("resume %q: %w", q.Name, err)
	}
	return n == 1, nil
}

// AckPause records that session applied the pause id on q: none of q's tasks
// starts on it any more.
func (b *Broker) AckPause(ctx context.Context, q *Queue, session, id string) error {
	if err := b.run(ctx, pauseAckScript, []string{q.Paused, q.pauseAcks}, session, id).Err(); err != nil {
		return fmt.Errorf("acknowledge pause of %q: %w", q.Name, err)
	}
	return nil
}

// PauseUnacked lists the live sessions of q that have not acknowledged the
// pause id (with those of workers that know no pauses), and how long until
// the latest of their lease deadlines: each acknowledges with its next
// heartbeat, before then, or is no longer waited for. standing is false if q
// is no longer paused with that id.
func (b *Broker) PauseUnacked(ctx context.Context, q *Queue, id string) (sessions []string, within time.Duration, standing bool, err error) {
	v, err := b.run(ctx, pauseWaitScript, []string{q.Paused, q.pauseAcks, q.Workers, q.legacyWorkers}, id).Slice()
	if err != nil {
		return nil, 0, false, fmt.Errorf("pause of %q: %w", q.Name, err)
	}
	if len(v) < 2 {
		return nil, 0, false, fmt.Errorf("pause of %q: unexpected reply %v", q.Name, v)
	}
	if st, _ := v[0].(int64); st != 1 {
		return nil, 0, false, nil
	}
	ms, _ := v[1].(int64)
	for _, s := range v[2:] {
		str, _ := s.(string)
		sessions = append(sessions, str)
	}
	return sessions, time.Duration(ms) * time.Millisecond, true, nil
}

// PausedQueues answers, for each queue, its pause id ("" if it is not paused).
func (b *Broker) PausedQueues(ctx context.Context, qs []*Queue) ([]string, error) {
	return b.getEach(ctx, qs, func(q *Queue) string { return q.Paused })
}

// getEach reads one string key of each queue in one round trip ("" for a
// missing one).
func (b *Broker) getEach(ctx context.Context, qs []*Queue, key func(*Queue) string) ([]string, error) {
	p := b.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(qs))
	for i, q := range qs {
		cmds[i] = p.Get(ctx, key(q))
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read the queues' state: %w", err)
	}
	out := make([]string, len(qs))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// PauseState is a queue's pause as a worker's heartbeat sees it: Paused, and
// the id of the pause (or of the resume that ended it). Ids grow: of two
// states, the one with the larger id is the later. ID 0: never paused.
type PauseState struct {
	Paused bool
	ID     int64
}

func parsePauseState(s string) PauseState {
	if len(s) < 3 {
		return PauseState{}
	}
	id, _ := strconv.ParseInt(s[2:], 10, 64)
	return PauseState{Paused: s[0] == 'P', ID: id}
}
